"""polyp-train end to end on CPU: a short PEFNet-atto run at 64x64 on a small real (or synthetic) subset.

Verified here: the loss goes down, best/last checkpoints + log.csv + metrics.json + split.json are
written, the best checkpoint loads, --resume continues the epoch count, and a missing data folder
gives one error line and exit 2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.train_helpers import small_dataset
from train.checkpoint import load_checkpoint, read_checkpoint
from train.cli_train import main as train_main
from train.cli_utils import run_cli


def _args(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--variant", "atto", "--size", "64", "--epochs", str(epochs),
            "--batch-size", "4", "--lr", "2e-3", "--split", "75/25/0", "--no-progress", "--workers", "2", *extra]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    data = small_dataset(root / "data", n=8)
    out = root / "run"
    assert train_main(_args(data, out, 4, "--no-augment")) == 0
    return data, out


def _log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_short_run_reduces_loss_and_writes_outputs(trained_run: tuple[Path, Path]) -> None:
    _, out = trained_run
    rows = _log(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0], losses
    assert all(0.0 <= float(r["val_iou"]) <= 1.0 and float(r["images_per_s"]) > 0 for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4 and metrics["train_images"] == 6 and metrics["val_images"] == 2
    best_iou = max(float(r["val_iou"]) for r in rows)
    assert metrics["best_val_iou"] == pytest.approx(best_iou, abs=1e-5)
    assert len(metrics["images_per_s"]) == 4 and metrics["command"].startswith("polyp-train --data")
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 6 and len(split["val"]) == 2 and not split["test"]
    info = read_checkpoint(out / "best")
    assert info.contract.variant == "atto" and info.contract.input_size == (64, 64)
    assert info.training["best_epoch"] == metrics["best_epoch"]
    assert info.training["split_sha256"] and "jaccard" in info.training["loss"]
    model, _, _ = load_checkpoint(out / "last")
    assert not model.training


def test_resume_continues(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = trained_run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    assert train_main(_args(data, copy, 5, "--no-augment", "--resume", str(copy / "last"))) == 0
    rows = _log(copy)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert json.loads((copy / "metrics.json").read_text())["epochs_run"] == 5


def test_missing_data_folder_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(train_main, _args(tmp_path / "nope", tmp_path / "out", 1), prog="polyp-train")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "nope" in err[0] and err[0].startswith("polyp-train: error:")
