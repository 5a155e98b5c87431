"""polyp-export: successful exports print their summary; bad input is one error line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polyp_live.engines.cli_export import main, parse_dynamic_batch, parse_size
from polyp_live.engines.errors import ExportError
from polyp_live.engines.onnx_format import read_onnx_metadata
from polyp_live.engines.sidecar import read_sidecar
from polyp_live.train.cli_utils import run_cli
from tests.engines_helpers import (
    exported,
    one_torch_thread,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert run_cli(main, argv, prog="polyp-export") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("polyp-export: error:") and "\n" not in err and message in err, err


def test_onnx_fp16_export_prints_parity(
    atto_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m16.onnx"
    argv = ["--checkpoint", str(atto_checkpoint), "--format", "onnx-fp16", "--dynamic-batch", "1:2:4"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "parity fp16 vs PyTorch FP32" in printed and "mask agreement" in printed and str(out) in printed
    meta = read_onnx_metadata(out)
    assert meta.precision == "fp16" and (meta.batch.min, meta.batch.max) == (1, 4)


def test_engine_from_checkpoint_with_rtx(
    atto_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx-cu13 is not installed")
    out = tmp_path / "m.engine"
    argv = ["--checkpoint", str(atto_checkpoint), "--format", "engine", "--flavour", "tensorrt_rtx", "--target",
            "sm89", "--workspace-mb", "32", "--no-progress", "--no-verify", "--out", str(out)]
    assert main(argv) == 0
    assert "targets sm89" in capsys.readouterr().out
    sidecar = read_sidecar(out)
    assert sidecar.source == str(atto_checkpoint) and sidecar.precision == "fp16"


def test_bad_input_is_one_line(atto_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               tmp_path_factory: pytest.TempPathFactory) -> None:
    ckpt = str(atto_checkpoint)
    out = str(tmp_path / "x.onnx")
    _fails(["--checkpoint", ckpt, "--format", "onnx", "--size", "100", "--out", out], capsys, "multiple of 32")
    _fails(["--checkpoint", ckpt, "--format", "onnx", "--size", "big", "--out", out], capsys, "--size must be")
    _fails(["--checkpoint", str(tmp_path / "none.safetensors"), "--format", "onnx", "--out", out], capsys, "not found")
    _fails(["--checkpoint", ckpt, "--format", "engine", "--precision", "int8", "--out", out], capsys, "Q/DQ ONNX")
    fp32 = str(exported(tmp_path_factory, atto_checkpoint))
    _fails(["--format", "engine", "--onnx", fp32, "--precision", "int8", "--out", out], capsys, "run polyp-calibrate")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("hello, I am not a model\n")
    _fails(["--format", "engine", "--onnx", str(garbage), "--out", out], capsys, "garbage.onnx")
    assert main(["--format", "onnx", "--out", out, "--no-verify"]) == 0  # no --checkpoint: the bundled model
    from polyp_live.train.checkpoint import read_checkpoint
    from polyp_live.train.zoo import resolve_bundled

    bundled = read_checkpoint(resolve_bundled("default")).contract
    assert read_onnx_metadata(Path(out)).contract == bundled


def test_parsers() -> None:
    assert parse_size("352") == 352 and parse_size("288x384") == (288, 384) and parse_size(None) is None
    assert parse_dynamic_batch("1:4:8") == (1, 4, 8)
    with pytest.raises(ExportError):
        parse_dynamic_batch("1:8")


def test_console_script_exit_code(tmp_path: Path) -> None:
    code = "from polyp_live.engines.cli_export import entry; entry()"
    argv = ["--checkpoint", str(tmp_path / "absent.safetensors"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "error:" in proc.stderr and "Traceback" not in proc.stderr
