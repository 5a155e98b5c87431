"""Checkpoints (round trip, pickle refusal, wrong variant, tampering) and ImageNet backbone weight loading."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from polyp_live.train.backbone_weights import convert_state_dict, load_backbone_weights
from polyp_live.train.checkpoint import checkpoint_paths, load_checkpoint, read_checkpoint, save_checkpoint
from polyp_live.train.contract import ModelContract
from polyp_live.train.convnext import ConvNeXtEncoder
from polyp_live.train.errors import CheckpointError
from polyp_live.train.hashing import sha256_file
from polyp_live.train.variants import VARIANTS, create_model
from tests.train_helpers import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _model(variant: str = "atto", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(variant)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the round trip covers buffers too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _model()
    contract = ModelContract("atto", (64, 64), threshold=0.4)
    weights = save_checkpoint(tmp_path / "m", model, contract, training={"epochs_run": 3})
    loaded, loaded_contract, info = load_checkpoint(weights)
    assert loaded_contract == contract and info.training == {"epochs_run": 3}
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    for name in ("m", "m.safetensors", "m.json"):  # any of the three spellings finds the pair
        assert read_checkpoint(tmp_path / name).weights_sha256 == info.weights_sha256


def test_pickle_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(1)}, path)  # a pickle (zip) under a safetensors name
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    with pytest.raises(CheckpointError, match="never unpickles"):
        read_checkpoint(pt)


def test_checkpoint_of_another_variant_is_a_shape_error(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "femto", _model("femto"), ModelContract("femto", (64, 64)))
    _, sidecar = checkpoint_paths(weights)
    data = json.loads(sidecar.read_text())
    data["contract"]["variant"] = data["model"]["variant"] = "atto"
    sidecar.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"has shape .* but PEFNet-atto needs"):
        load_checkpoint(weights)


def test_tampered_weights_fail_the_hash(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "m", _model(), ModelContract("atto", (64, 64)))
    before = sha256_file(weights)
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="does not match its sidecar"):
        load_checkpoint(weights)
    assert sha256_file(weights) != before


def test_missing_sidecar_is_named(tmp_path: Path) -> None:
    weights = save_checkpoint(tmp_path / "m", _model(), ModelContract("atto", (64, 64)))
    checkpoint_paths(weights)[1].unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "m.json"))):
        load_checkpoint(weights)


# --------------------------------------------------------------------------- backbone weights

_TO_OFFICIAL = (
    (r"^stem\.([01])\.", r"downsample_layers.0.\1."),
    (r"^stages\.(\d)\.downsample\.([01])\.", r"downsample_layers.\1.\2."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.", r"stages.\1.\2.dwconv."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.norm\.", r"stages.\1.\2.norm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.", r"stages.\1.\2.pwconv1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.", r"stages.\1.\2.pwconv2."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.gamma$", r"stages.\1.\2.gamma"),
)


def _encoder(variant: str, seed: int) -> ConvNeXtEncoder:
    torch.manual_seed(seed)
    spec = VARIANTS[variant]
    encoder = ConvNeXtEncoder(spec.depths, spec.dims)
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_()  # every tensor distinct, gammas and norms included
    return encoder


def _official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _TO_OFFICIAL:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                break
        out[new] = value
    dim = state["stages.3.blocks.0.gamma"].shape[0]
    out.update({"norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim),
                "head.weight": torch.zeros(1000, dim), "head.bias": torch.zeros(1000)})
    return out


def _timm(state: dict[str, torch.Tensor], conv_mlp: bool) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if conv_mlp and re.search(r"\.mlp\.fc[12]\.weight$", key):
            value = value[:, :, None, None]  # timm's conv_mlp: 1x1 conv weights
        out[key] = value
    dim = state["stages.3.blocks.0.gamma"].shape[0]
    out.update({"head.norm.weight": torch.ones(dim), "head.norm.bias": torch.zeros(dim),
                "head.fc.weight": torch.zeros(1000, dim), "head.fc.bias": torch.zeros(1000)})
    return out


@pytest.mark.parametrize("layout", ["official", "timm", "timm-conv-mlp", "prefixed"])
def test_backbone_weights_load_in_both_layouts(layout: str, tmp_path: Path) -> None:
    source = {k: v.clone() for k, v in _encoder("atto", seed=1).state_dict().items()}
    if layout == "official":
        state = _official(source)
    elif layout == "prefixed":
        state = {f"module.{k}": v for k, v in _official(source).items()}
    else:
        state = _timm(source, conv_mlp=layout == "timm-conv-mlp")
    path = tmp_path / "convnext_atto.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    target = _encoder("atto", seed=2)
    assert load_backbone_weights(target, path) == len(source)
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())


def test_backbone_weights_of_another_variant_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "convnext_femto.safetensors"
    save_file(_official(_encoder("femto", seed=0).state_dict()), str(path))
    with pytest.raises(CheckpointError, match="another ConvNeXt variant"):
        load_backbone_weights(_encoder("atto", seed=0), path)
    deeper = tmp_path / "convnext_nano.safetensors"  # more blocks: unexpected tensors
    save_file(_timm(_encoder("nano", seed=0).state_dict(), conv_mlp=False), str(deeper))
    with pytest.raises(CheckpointError, match="another ConvNeXt variant"):
        load_backbone_weights(_encoder("atto", seed=0), deeper)


def test_backbone_weights_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone_weights(_encoder("atto", 0), tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="pickles"):
        load_backbone_weights(_encoder("atto", 0), tmp_path / "convnext.pth")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_backbone_weights(_encoder("atto", 0), junk)
    with pytest.raises(CheckpointError, match="official or timm layout"):
        convert_state_dict({"features.0.weight": torch.zeros(1)})


def test_create_model_loads_backbone_weights(tmp_path: Path) -> None:
    source = _encoder("atto", seed=3).state_dict()
    path = tmp_path / "w.safetensors"
    save_file(_timm(source, conv_mlp=True), str(path))
    model = create_model("atto", backbone_weights=path)
    assert torch.equal(model.encoder.state_dict()["stages.2.blocks.5.mlp.fc1.weight"],
                       source["stages.2.blocks.5.mlp.fc1.weight"])
