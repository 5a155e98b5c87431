"""One checkpoint resolver for every command (polyp_live.train.zoo.resolve_checkpoint): bundled name, run folder -> its
best, stem, ``.safetensors``, ``.json``; a resume state passed as a model says what it is and what to pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from polyp_live.engines.registry import resolve_engine_path
from polyp_live.realtime import cli as live_cli
from polyp_live.train import cli_eval
from polyp_live.train.cli_utils import run_cli
from polyp_live.train.errors import CheckpointError
from polyp_live.train.zoo import WEIGHTS_DIR, resolve_checkpoint


@pytest.fixture
def run_dir(atto_checkpoint: Path, tmp_path: Path) -> Path:
    """A polyp-train run folder: best + last checkpoints (with sidecars) and a resume state beside last."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best", "last"):
        shutil.copy(atto_checkpoint, run / f"{name}.safetensors")
        shutil.copy(atto_checkpoint.with_suffix(".json"), run / f"{name}.json")
    (run / "last.state.safetensors").write_bytes(b"\0" * 16)
    (run / "last.state.json").write_text('{"format": "polyp-live.train-state/1"}\n')
    return run


def test_every_spelling_names_the_same_checkpoint(run_dir: Path) -> None:
    best = run_dir / "best.safetensors"
    for spelling in (run_dir, best, run_dir / "best", run_dir / "best.json"):
        assert resolve_checkpoint(spelling) == best
        assert resolve_engine_path(spelling) == best  # polyp-live / polyp-export / benchmarks: the same resolver
    assert resolve_checkpoint("default") == WEIGHTS_DIR / "default.safetensors"
    (run_dir / "best.safetensors").unlink()
    assert resolve_checkpoint(run_dir) == run_dir / "last.safetensors"  # a run that has not validated yet


@pytest.mark.parametrize("name", ["last.state.safetensors", "last.state.json"])
def test_a_resume_state_is_refused_with_what_to_pass(run_dir: Path, name: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(run_dir / name)
    message = str(caught.value)
    assert "training resume state" in message and "not a model" in message
    assert f"pass {run_dir / 'best'} or {run_dir / 'last'}" in message and f"--resume {run_dir}" in message


def test_a_folder_that_is_no_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"without best\.safetensors or last\.safetensors"):
        resolve_checkpoint(tmp_path)


def test_commands_say_it_in_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(run_dir / "last.state.safetensors")
    code = run_cli(cli_eval.main, ["--checkpoint", state, "--data", str(tmp_path)], prog="polyp-eval")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("polyp-eval: error: ") and "resume state" in err[0]
    code = run_cli(live_cli.main, ["--input", str(tmp_path / "x.mp4"), "--engine", state, "--no-view"],
                   prog="polyp-live")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "resume state" in err[0] and "RUN" not in err[0]
