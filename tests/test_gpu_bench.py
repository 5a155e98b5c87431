"""``benchmarks/gpu.sh`` / ``gpu_bench.py``: the whole prepared GPU script as a CPU dry run (``av`` and ``PyQt6``
unimportable, as on the GPU machine), every item kind and path but the CUDA-only ones; the budget, the plan read from
the default's checkpoint contract, the targets, the carried-data helper and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import gpu_bench, gpu_measure, gpu_report
from benchmarks.common import finite_positive, machine_tag
from polyp_live.train.errors import PolypLiveError
from tests.conftest import REPO, SAMPLE_CLIP, need


def _blocked_imports(folder: Path) -> Path:
    for name in ("av", "PyQt6"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    return folder


@pytest.fixture(scope="module")
def dry_run(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """gpu.sh --device cpu --dry-run, the whole plan, as the GPU machine would run it (no PyAV, no PyQt6)."""
    need(SAMPLE_CLIP)
    tmp = tmp_path_factory.mktemp("gpu-dry")
    out = tmp / "out"
    env = {**os.environ, "PYTHONPATH": f"{_blocked_imports(tmp / 'block')}{os.pathsep}{REPO}",
           "POLYP_BENCH_NO_AV": "1", "GPU_BENCH_BUDGET_S": "400", "OUT": str(out), "POLYP_LIVE_CACHE": str(cache_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--device", "cpu", "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((out / f"gpu_bench-{machine_tag('cpu')}-dryrun.json").read_text())
    return report, out, proc.stdout


def test_dry_run_runs_every_kind_of_item(dry_run: tuple[dict, Path, str]) -> None:
    report, out, stdout = dry_run
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and "gpu_bench.log" in files and all((out / f).stat().st_size < 16 * 2**20 for f in files)
    assert report["dry_run"] and report["compile_backend"] == "eager"
    statuses = [i["status"] for i in report["items"]]
    assert "error" not in statuses and "gpu_bench exit 0" in stdout
    done = {i["item"].split(":")[0] for i in report["items"] if i["status"] == "done"}
    assert {"preprocessing", "pipeline", "live"} <= done
    skipped = [i for i in report["items"] if i["status"] == "skipped"]
    assert skipped and all("dry run: the same tiny model" in i["reason"] for i in skipped)


def test_dry_run_latency_rows(dry_run: tuple[dict, Path, str]) -> None:
    rows = dry_run[0]["rows"]
    by_mode: dict[str, list[dict]] = {}
    for row in rows:
        by_mode.setdefault(row["mode"], []).append(row)
    assert {"eager", "graphs", "compile-ro"} <= set(by_mode)  # compile-ma: the same path on the CPU
    for row in by_mode["graphs"]:  # the CUDA-only path says why it did not run
        assert row["status"] == "unavailable" and "CUDA graphs need a CUDA GPU" in row["reason"]
    for mode in ("eager", "compile-ro"):
        for row in by_mode[mode]:
            assert row["status"] == "ok", row
            assert row["size"] == "64x64" and row["precision"] == "fp32" and row["batch"] in (1, 2)
            for key in ("median_ms", "ms_per_frame", "gflop_per_frame", "tflops"):
                assert finite_positive(row[key]), (key, row)
            assert row["peak_fraction"] == pytest.approx(row["tflops"] / gpu_measure.PEAK_TFLOPS, rel=1e-2)
            assert row["parity"]["cpu_preprocess"]["agreement"] >= 0.999
            assert row["parity"]["engine_prepare"]["agreement"] >= 0.99
    assert all(finite_positive(r["compile_s"]) for r in by_mode["compile-ro"])
    assert {r["batch"] for r in by_mode["compile-ro"]} == {1, 2}  # one compiled graph per batch size
    assert {r["variant"] for r in rows} >= {"atto", "lite0"}


def test_dry_run_pipeline_live_preprocess_and_targets(dry_run: tuple[dict, Path, str]) -> None:
    report, out, _ = dry_run
    (pipe,) = report["pipeline"]
    assert pipe["size"] == "1920x1080" and "no PyAV" in pipe["note"] and pipe["frames"] == 4
    assert pipe["bounding_stage"] in pipe["stages_alone"] and finite_positive(pipe["pipeline_fps"])
    assert all(finite_positive(s["p95_ms"]) for s in pipe["stages_alone"].values() if s["status"] == "ok")
    (live,) = report["live"]
    # the pipeline lists only queues that dropped something: a fast run can drop nothing at all
    assert live["shown"] > 0 and finite_positive(live["display_p95_ms"]) and isinstance(live["drops"], dict)
    assert live["inference_drops"] == sum(int(live["drops"].get(q, 0)) for q in ("frames", "batches", "inferences"))
    assert isinstance(live["pass_no_inference_drops"], bool) and live["error"] is None
    (prep,) = report["preprocess"]
    assert prep["frames"] == 4 and prep["max_abs_grey"] <= 1.0 + 1e-3 and prep["mask_agreement_min"] >= 0.99
    targets = report["targets"]
    assert any(t.startswith("compiled masks vs eager FP32") and t.endswith("PASS") for t in targets)
    assert any("file mode" in t and "bound by" in t for t in targets)
    assert any(t.startswith("PEFNet-small 352x352 FP16 batch 1") and "not measured" in t for t in targets)
    md = next(out.glob("gpu_bench-*.md")).read_text()
    assert "## Latency" in md and "TFLOP/s" in md and "### Pipeline, file mode" in md and "### Live" in md


def test_budget_skips_what_does_not_fit(cache_dir: Path, tmp_path: Path) -> None:
    assert gpu_bench.main(["--device", "cpu", "--dry-run", "--budget", "0", "--out", str(tmp_path)]) == 0
    report = json.loads(next(tmp_path.glob("gpu_bench-*.json")).read_text())
    assert report["rows"] == [] and report["items"]
    assert all(i["status"] == "skipped" and "time budget" in i["reason"] for i in report["items"])
    assert any("not measured" in t for t in report["targets"])


def test_plan_follows_the_default_contract() -> None:
    names = [i.name for i in gpu_bench.plan(("lite0", 256))]
    assert "default (lite0 256) eager + CUDA graphs" in names and "lite0 256 eager + CUDA graphs" not in names
    assert "lite0 352 eager + CUDA graphs" in names and names[0].startswith("preprocessing")
    kinds = [i.kind for i in gpu_bench.plan(None)]
    assert "pipeline" not in kinds and "preprocess" not in kinds  # those need the bundled model
    compile_first = next(i for i in gpu_bench.plan(("atto", 192)) if "compile-ro" in i.modes)
    assert compile_first.batches == (1, 16)
    estimates = sum(i.estimate_s for i in gpu_bench.plan(("lite0", 256))[:8])
    assert estimates < 540  # the first eight items (targets, pipeline, live, compile of both) fit one call


def test_refusals(tmp_path: Path) -> None:
    from polyp_live.train.devices import cuda_available

    with pytest.raises(PolypLiveError, match="add --dry-run"):
        gpu_bench.main(["--device", "cpu", "--out", str(tmp_path)])
    if not cuda_available():
        with pytest.raises(PolypLiveError, match="no CUDA GPU"):
            gpu_bench.main(["--out", str(tmp_path)])


def test_targets_pass_and_fail() -> None:
    def row(variant: str, ms: float, mode: str, model: str = "random", agreement: float = 1.0) -> dict:
        return {"status": "ok", "variant": variant, "size": "352x352", "precision": "fp16", "batch": 1,
                "mode": mode, "ms_per_frame": ms, "p95_ms": ms, "model": model,
                "parity": {"cpu_preprocess": {"agreement": agreement}}}

    report = {"rows": [row("small", 2.39, "graphs"), row("small", 1.41, "compile-ro", agreement=0.9995),
                       row("lite0", 0.62, "graphs", model="default (x)")], "pipeline": [], "live": [],
              "preprocess": []}
    lines = gpu_report.target_lines(report)
    assert lines[0].startswith("PEFNet-small 352x352 FP16 batch 1: 1.410 ms (compile-ro") and lines[0].endswith("PASS")
    assert lines[1].startswith("default model FP16 batch 1: 0.620 ms") and lines[1].endswith("FAIL")
    assert "99.950 %" in lines[2] and lines[2].endswith("PASS")
    report["rows"][1]["parity"]["cpu_preprocess"]["agreement"] = 0.998
    assert gpu_report.target_lines(report)[2].endswith("FAIL")


def test_frames_come_from_the_carried_folder_else_the_sample(tmp_path: Path) -> None:
    need(SAMPLE_CLIP)
    images = tmp_path / "data" / "kvasir-seg" / "images"
    images.mkdir(parents=True)
    masks = tmp_path / "data" / "cvc-clinicdb" / "seq01" / "masks"
    masks.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.jpg"), np.full((40, 50, 3), 60 * i, np.uint8))
        cv2.imwrite(str(masks / f"{i}.png"), np.zeros((8, 8), np.uint8))
    frames, origin = gpu_measure.data_frames(5, tmp_path / "data")
    assert len(frames) == 5 and [f.shape for f in frames[:3]] == [(40, 50, 3)] * 3  # masks are never frames
    assert origin.startswith("3 kvasir-seg, 2 frames of colonoscopy_1080p_30f.mp4")
    frames, origin = gpu_measure.data_frames(2, tmp_path / "absent")
    assert frames[0].shape == (1080, 1920, 3) and "colonoscopy_1080p_30f.mp4" in origin


def test_gpu_data_copies_a_small_sample_without_masks(tmp_path: Path) -> None:
    src = tmp_path / "shared"
    for rel in ("kvasir-seg/images", "kvasir-seg/masks", "cvc-clinicdb/seq01/images", "cvc-clinicdb/seq01/masks",
                "holohub-1080p"):
        (src / rel).mkdir(parents=True)
        for i in range(6):
            (src / rel / f"{i}.png").write_bytes(b"png")
    dest = tmp_path / "dest"
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_data.sh"), str(src), "4"], capture_output=True,
                          text=True, env={**os.environ, "GPU_DATA_DEST": str(dest)}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.png"))
    assert len(copied) == 12 and not any("masks" in p for p in copied)
    assert sum(p.startswith("kvasir-seg/images/") for p in copied) == 4
