"""Smoke runs of the benchmark scripts with tiny settings: the JSON they write has the promised fields and
sane numbers, unavailable combinations carry a reason, the GPU script's no-PyAV path runs end to end on the
CPU (``tests/test_gpu_bench.py``), and the plots are real PNGs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import bench_engines, bench_live, bench_pipeline, plot
from benchmarks.common import finite_positive, machine_tag
from polyp_live.train.errors import PolypLiveError

MACHINE_FIELDS = ("hostname", "cpu", "cores", "gpu", "tag", "libraries", "command", "date_utc", "load_average_start")
LIBRARIES = ("torch", "onnxruntime", "numpy", "opencv-python-headless", "av")


def check_machine(report: dict) -> None:
    machine = report["machine"]
    assert all(key in machine for key in MACHINE_FIELDS)
    assert machine["cores"] >= 1 and machine["tag"] == machine_tag("cpu")
    assert all(name in machine["libraries"] for name in LIBRARIES)
    assert machine["libraries"]["numpy"] and machine["libraries"]["torch"]


@pytest.fixture(scope="module")
def engines_report(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("engines") / "engines.json"
    code = bench_engines.main(["--variants", "atto", "--sizes", "64", "--backends", "torch,onnxruntime,tensorrt",
                               "--precisions", "fp32,int8", "--batches", "1", "--seconds", "0.3", "--min-runs", "3",
                               "--threads", "1", "--device", "cpu", "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text()), out


def test_bench_engines_rows_and_reasons(engines_report: tuple[dict, Path]) -> None:
    report, path = engines_report
    check_machine(report)
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    assert len(report["rows"]) == 6  # 3 backends x 2 precisions x 1 batch, none silently skipped
    for key in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")):
        row = rows[key]
        assert row["status"] == "ok", row
        assert row["runs"] >= 3 and row["batch"] == 1 and row["size"] == "64x64"
        for field in ("median_ms", "p95_ms", "ms_per_frame", "fps", "rss_mb", "peak_rss_mb"):
            assert finite_positive(row[field]), (field, row)
        assert row["p95_ms"] >= row["median_ms"]
        assert math.isclose(row["fps"], 1000.0 / row["median_ms"], rel_tol=0.01)
    assert rows[("onnxruntime", "int8")]["describe"].startswith("onnxruntime int8")
    assert rows[("torch", "int8")]["status"] == "unavailable" and "INT8" in rows[("torch", "int8")]["reason"]
    for precision in ("fp32", "int8"):
        row = rows[("tensorrt", precision)]
        assert row["status"] == "unavailable" and "TensorRT" in row["reason"]
    md = path.with_suffix(".md").read_text()
    assert "| model | backend |" in md and "TensorRT" in md and "cpu-" in md


def test_bench_engines_rejects_unknown_precision(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PolypLiveError, match="unknown precision"):
        bench_engines.main(["--variants", "atto", "--sizes", "64", "--precisions", "fp8", "--json",
                            str(tmp_path / "x.json")])


@pytest.fixture(scope="module")
def pipeline_report(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                    cvc_clip: Callable[[str], Path]) -> tuple[dict, Path]:
    clip = cvc_clip("seq01")
    out = tmp_path_factory.mktemp("pipeline") / "pipeline.json"
    code = bench_pipeline.main(["--input", str(clip), "--max-frames", "10", "--engine", "random:atto", "--size", "64",
                                "--threads", "1", "--device", "cpu", "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text()), out


def test_bench_pipeline_measures_all_three_ways(pipeline_report: tuple[dict, Path]) -> None:
    report, path = pipeline_report
    check_machine(report)
    assert report["decoder"] == "av" and report["sink"] == "mp4"
    (item,) = report["inputs"]
    assert item["frames"] == 10 and item["size"] == "384x288"
    assert item["pipeline"]["frames"] == 10 and item["naive"]["frames"] == 10
    for name in bench_pipeline.STAGE_NAMES:
        stage = item["stages"][name]
        assert stage["status"] == "ok" and stage["count"] == 10, (name, stage)
        assert finite_positive(stage["fps"]) and stage["p95_ms"] >= stage["p50_ms"] > 0
    assert finite_positive(item["pipeline"]["fps"]) and finite_positive(item["naive"]["fps"])
    slowest = min(item["stages"].values(), key=lambda s: s["fps"])
    assert item["slowest_stage_fps"] == slowest["fps"]
    assert math.isclose(item["pipeline_vs_naive"], item["pipeline"]["fps"] / item["naive"]["fps"], rel_tol=0.01)
    assert report["aggregate"]["frames"] == 10
    cpu = [item["stages"][name]["cpu_ms"] for name in bench_pipeline.STAGE_NAMES]
    assert all(ms >= 0 for ms in cpu) and sum(cpu) > 0
    assert math.isclose(item["cpu_ceiling_fps"], report["machine"]["cores"] * 1000 / sum(cpu), rel_tol=0.01)
    assert any(line.endswith(("PASS", "FAIL")) for line in report["verdict"])
    assert "pipeline fps" in path.with_suffix(".md").read_text()


def test_cpu_ceiling_counts_every_stage_the_pipeline_runs() -> None:
    """Known answer: 5 + 20 + 15 CPU ms per frame on 2 cores is 50 frames/s; a stage decoded ahead of the run
    (not in the pipeline) and a skipped one do not count."""
    stages = {"decode": {"status": "ok", "fps": 200.0, "cpu_ms": 5.0},
              "infer": {"status": "ok", "fps": 90.0, "cpu_ms": 20.0},
              "encode": {"status": "ok", "fps": 100.0, "cpu_ms": 15.0},
              "preprocess": {"status": "ok", "fps": 900.0, "cpu_ms": 1.0, "in_pipeline": False},
              "overlay": {"status": "skipped"}}
    assert bench_pipeline.cpu_ceiling_fps(stages, cores=2) == 50.0
    verdict = bench_pipeline.judge(45.0, 30.0, stages)
    assert verdict["slowest_stage"] == "infer" and verdict["cpu_ms_per_frame"] == 40.0


def test_bench_pipeline_missing_input_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(PolypLiveError, match="input not found"):
        bench_pipeline.main(["--input", str(tmp_path / "none.mp4"), "--json", str(tmp_path / "x.json")])


def test_plots_are_png(engines_report: tuple[dict, Path], pipeline_report: tuple[dict, Path], tmp_path: Path) -> None:
    for _, path in (engines_report, pipeline_report):
        png = plot.plot_file(path, tmp_path)
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_refuses_a_json_that_is_no_report(tmp_path: Path) -> None:
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(PolypLiveError, match="not a benchmark report"):
        plot.plot_file(bad)


# ----------------------------------------------------------------------------- drift rule (no threads)


def windows(key: str, values: list[float]) -> list[dict]:
    return [{key: v} for v in values]


def test_drift_flags_steady_growth_but_not_noise() -> None:
    period = 1000.0 / 60
    grow = bench_live.drift(windows("display_p95_ms", [10, 12, 20, 28, 36, 45]), period)
    assert grow["display_p95_ms"]["drift"] and grow["any"]
    noise = bench_live.drift(windows("display_p95_ms", [10, 14, 9, 12, 11, 13]), period)
    assert not noise["display_p95_ms"]["drift"] and not noise["any"]


def test_drift_on_threads_rss_and_mask_age_floors() -> None:
    period = 1000.0 / 60
    assert bench_live.drift(windows("os_threads", [12, 12, 12, 13, 13, 13]), period)["os_threads"]["drift"]
    assert not bench_live.drift(windows("os_threads", [12] * 6), period)["any"]
    assert not bench_live.drift(windows("rss_mb", [400, 402, 405, 407, 410, 412]), period)["any"]  # < 16 MiB
    assert bench_live.drift(windows("rss_mb", [400, 420, 440, 460, 480, 500]), period)["rss_mb"]["drift"]
    # inference time moves with the load: a 15 ms swing on a 40 ms inference is noise, 60 ms is not
    assert not bench_live.drift(windows("inference_p50_ms", [40, 45, 50, 55, 55, 55]), period, 40.0)["any"]
    assert bench_live.drift(windows("inference_p50_ms", [40, 60, 80, 100, 100, 100]), period, 40.0)["any"]
    # the pipeline's own wait for a mask (mask age minus model time) may not grow by more than a frame period
    assert not bench_live.drift(windows("mask_wait_p50_ms", [10, 12, 11, 14, 13, 15]), period)["any"]
    assert bench_live.drift(windows("mask_wait_p50_ms", [10, 20, 30, 40, 50, 60]), period)["any"]


def test_drift_needs_two_windows() -> None:
    result = bench_live.drift(windows("rss_mb", [400]), 16.7)
    assert result["rss_mb"] == {"status": "not enough windows"} and not result["any"]


def test_bench_live_with_a_real_engine(cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    code = bench_live.main(["--fps", "30", "--seconds", "2", "--window-seconds", "1", "--warmup-seconds", "0.5",
                            "--resolution", "320x240", "--engine", "random:atto", "--size", "64", "--device", "cpu",
                            "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    check_machine(report)
    (session,) = report["sessions"]
    overall = session["overall"]
    assert session["fps"] == 30 and len(session["windows"]) == 2 and overall["shown"] > 30
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert finite_positive(overall["display"][key]) and finite_positive(overall["mask_age"][key])
    assert finite_positive(overall["inference_p50_ms"]) and 0.0 <= overall["drop_rate"] < 1.0
    assert session["trend"]["display_ms_per_min"] is not None and "any" in session["drift"]
    assert session["leftover_pipeline_threads"] == []
    assert plot.plot_file(out, tmp_path).stat().st_size > 5000


def test_bench_viewer_paints_what_the_pipeline_hands_it(tmp_path: Path) -> None:
    """The viewer benchmark on the offscreen platform: a real window paints a simulated camera's results; every
    result handed to it is painted or counted as a display drop, and the report says so."""
    pytest.importorskip("PyQt6")
    from benchmarks import bench_viewer

    out = tmp_path / "viewer.json"
    assert bench_viewer.main(["--engine", "random:atto", "--size", "64", "--fps", "30", "--seconds", "1.5",
                              "--warmup-seconds", "0.5", "--resolution", "320x240", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    check_machine(report)
    session = report["sessions"][0]
    assert session["platform"] == "offscreen" and session["camera_ticks"] >= 30
    assert session["painted"] > 0 and session["handed_to_window"] <= session["camera_ticks"]
    assert abs(session["handed_to_window"] - session["painted"] - session["display_drops"]) <= 1  # one in flight
    assert session["capture_to_painted"]["count"] == session["painted"]
    assert "display drops" in out.with_suffix(".md").read_text()
