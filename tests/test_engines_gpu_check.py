"""polyp_live.engines.gpu_check: a CPU dry run of the script, its no-GPU exit, and (on a GPU) the real check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polyp_live.engines.gpu_check import main
from polyp_live.train.devices import cuda_available
from tests.engines_helpers import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_dry_run_on_cpu_writes_a_passing_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    argv = ["--checkpoint", "random:atto", "--size", "64", "--device", "cpu", "--variants", "fp32",
            "--iterations", "2", "--warmup", "1", "--frames", "2", "--batches", "1,2", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    variant = report["variants"]["fp32"]
    assert variant["passed"] and variant["parity_cpu_preprocess"]["agreement"] >= 0.999
    assert set(variant["latency"]) == {"b1_infer", "b1_prepare_infer", "b2_infer", "b2_prepare_infer"}
    assert all(v["median_ms"] > 0 for v in variant["latency"].values())


def test_without_gpu_it_exits_2(tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("a GPU is present")
    assert main(["--checkpoint", "random:atto", "--out", str(tmp_path / "x.json")]) == 2


def test_engines_import_no_gui_video_or_realtime_modules() -> None:
    code = (
        "import sys, polyp_live.engines.gpu_check, polyp_live.engines.registry, polyp_live.engines.cli_export\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('realtime', 'calibration', 'av', 'PyQt6'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_gpu_variants_pass(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    argv = ["--checkpoint", "random:atto", "--size", "128", "--variants", "fp32,fp16,fp16-graphs",
            "--iterations", "10", "--out", str(out)]
    assert main(argv) == 0, out.read_text()
