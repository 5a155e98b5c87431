"""PNG charts from the benchmark JSON files (matplotlib, Agg backend: no display needed).

    python benchmarks/plot.py                                  # every JSON in benchmarks/results/
    python benchmarks/plot.py benchmarks/results/bench_engines-cpu-2core.json --out /tmp/charts

One PNG per JSON, named like it: engines and GPU runs -> frames/s per backend/precision/mode/batch;
pipeline -> fps per stage alone vs the naive loop and the threaded pipeline, plus per-stage latency;
live -> display latency and mask age percentiles per camera rate; soak -> latency, RSS and threads per window.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/plot.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

STAGES = ("decode", "preprocess", "infer", "postprocess", "overlay", "encode")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(report: dict[str, Any], what: str) -> str:
    import textwrap

    machine = report.get("machine", {})
    return textwrap.fill(f"{what} - {machine.get('tag', '?')} ({machine.get('date_utc', '')})", 110)


def plot_engines(report: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    rows = [r for r in report["rows"] if r.get("status") == "ok"]
    labels = [f"{r['variant']} {r['size']} {r['backend']} {r['precision']} {r['mode']} b{r['batch']}" for r in rows]
    fig, (ax_fps, ax_ms) = plt.subplots(1, 2, figsize=(14, 0.35 * max(4, len(rows)) + 1.5))
    ax_fps.barh(labels, [r["fps"] for r in rows], color="tab:blue")
    ax_fps.set_xlabel("frames / s (model only)")
    ax_fps.invert_yaxis()
    ax_ms.barh(labels, [r["ms_per_frame"] for r in rows], color="tab:orange", label="median")
    ax_ms.barh(labels, [r["p95_ms"] / r["batch"] - r["ms_per_frame"] for r in rows],
               left=[r["ms_per_frame"] for r in rows], color="tab:red", alpha=0.4, label="to p95")
    ax_ms.set_xlabel("ms / frame")
    ax_ms.invert_yaxis()
    ax_ms.set_yticklabels([])
    ax_ms.legend(loc="lower right")
    fig.suptitle(_title(report, "Engine throughput and latency"))
    return _save(fig, out)


def plot_pipeline(report: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    items = report["inputs"]
    fig, (ax_fps, ax_lat) = plt.subplots(2, 1, figsize=(max(8, 1.4 * len(items) + 4), 9))
    width = 0.8 / (len(STAGES) + 2)
    xs = range(len(items))
    for k, stage in enumerate(STAGES):
        values = [i["stages"][stage].get("fps") or 0.0 for i in items]
        ax_fps.bar([x + k * width for x in xs], values, width, label=f"{stage} alone")
    ax_fps.bar([x + len(STAGES) * width for x in xs], [i["naive"]["fps"] for i in items], width, color="grey",
               label="naive loop")
    ax_fps.bar([x + (len(STAGES) + 1) * width for x in xs], [i["pipeline"]["fps"] for i in items], width,
               color="black", label="threaded pipeline")
    ax_fps.set_xticks([x + 0.4 for x in xs], [Path(i["input"]).stem for i in items], rotation=30, ha="right")
    ax_fps.set_yscale("log")
    ax_fps.set_ylabel("frames / s (log)")
    ax_fps.legend(fontsize=7, ncol=4)
    p50 = [sum(i["stages"][s].get("p50_ms", 0.0) for i in items) / len(items) for s in STAGES]
    p95 = [sum(i["stages"][s].get("p95_ms", 0.0) for i in items) / len(items) for s in STAGES]
    ax_lat.bar([k - 0.2 for k in range(len(STAGES))], p50, 0.4, label="p50")
    ax_lat.bar([k + 0.2 for k in range(len(STAGES))], p95, 0.4, label="p95")
    ax_lat.set_xticks(range(len(STAGES)), STAGES)
    ax_lat.set_ylabel("ms per frame (mean over inputs)")
    ax_lat.legend()
    fig.suptitle(_title(report, f"Pipeline: {report['engine']}"), fontsize=9)
    return _save(fig, out)


def plot_live(report: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    sessions = report["sessions"]
    fig, (ax_bar, ax_time) = plt.subplots(1, 2, figsize=(13, 4.5))
    keys = ("p50_ms", "p95_ms", "p99_ms")
    for k, key in enumerate(keys):
        ax_bar.bar([2 * s + k * 0.3 for s in range(len(sessions))],
                   [s["overall"]["display"].get(key, 0.0) for s in sessions], 0.3, label=f"display {key[:3]}")
        ax_bar.bar([2 * s + 1 + k * 0.3 for s in range(len(sessions))],
                   [s["overall"]["mask_age"].get(key, 0.0) for s in sessions], 0.3, label=f"mask age {key[:3]}",
                   hatch="//")
    ax_bar.set_xticks([2 * s + 0.8 for s in range(len(sessions))], [f"{s['fps']:g} fps" for s in sessions])
    ax_bar.set_ylabel("ms")
    ax_bar.legend(fontsize=7, ncol=2)
    for s in sessions:
        t = [w["t_end_s"] for w in s["windows"] if w.get("t_end_s") is not None]
        ax_time.plot(t, [w.get("display_p95_ms") for w in s["windows"]][: len(t)], marker="o",
                     label=f"{s['fps']:g} fps display p95")
        ax_time.plot(t, [w.get("mask_age_p95_ms") for w in s["windows"]][: len(t)], marker="x",
                     label=f"{s['fps']:g} fps mask age p95")
    ax_time.set_xlabel("s")
    ax_time.set_ylabel("ms")
    ax_time.legend(fontsize=7)
    fig.suptitle(_title(report, f"Live latency: {report['engine']}"), fontsize=9)
    return _save(fig, out)


def plot_soak(report: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    windows = report["session"]["windows"]
    t = [w["t_end_s"] for w in windows]
    fig, (ax_lat, ax_mem) = plt.subplots(1, 2, figsize=(13, 4.5))
    for key in ("display_p50_ms", "display_p95_ms", "mask_age_p50_ms", "mask_age_p95_ms"):
        ax_lat.plot(t, [w.get(key) for w in windows], marker="o", label=key)
    ax_lat.set_xlabel("s")
    ax_lat.set_ylabel("ms")
    ax_lat.legend(fontsize=7)
    ax_mem.plot(t, [w["rss_mb"] for w in windows], marker="o", color="tab:purple", label="RSS MiB")
    ax_mem.set_ylabel("RSS MiB")
    ax_thr = ax_mem.twinx()
    ax_thr.plot(t, [w["os_threads"] for w in windows], marker="x", color="tab:green", label="OS threads")
    ax_thr.set_ylabel("threads")
    ax_mem.set_xlabel("s")
    fig.suptitle(_title(report, f"Soak ({'PASS' if report['passed'] else 'FAIL'})"), fontsize=9)
    return _save(fig, out)


def plot_gpu(report: dict[str, Any], out: Path) -> Path:
    return plot_engines(report, out)


PLOTTERS: dict[str, Callable[[dict[str, Any], Path], Path]] = {
    "bench_engines": plot_engines,
    "bench_pipeline": plot_pipeline,
    "bench_live": plot_live,
    "soak": plot_soak,
    "gpu_bench": plot_gpu,
}


def _save(fig: Any, out: Path) -> Path:
    plt = _pyplot()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_file(path: Path, out_dir: Path | None = None) -> Path:
    """One JSON report -> one PNG next to it (or in ``out_dir``)."""
    from polyp_live.train.errors import PolypLiveError

    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PolypLiveError(f"cannot read benchmark JSON {path}: {exc}") from None
    kind = report.get("kind") if isinstance(report, dict) else None
    if kind not in PLOTTERS:
        raise PolypLiveError(f"{path}: not a benchmark report (kind {kind!r}; known: {', '.join(PLOTTERS)})")
    return PLOTTERS[kind](report, (out_dir or path.parent) / f"{path.stem}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/plot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="*", type=Path, help="benchmark JSON files (default: benchmarks/results/*)")
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: next to each JSON)")
    parser.add_argument("--debug", action="store_true", help="tracebacks")
    args = parser.parse_args(argv)
    files = args.json or sorted(common.RESULTS_DIR.glob("*.json"))
    if not files:
        from polyp_live.train.errors import PolypLiveError

        raise PolypLiveError(f"no benchmark JSON given and none in {common.RESULTS_DIR}")
    for path in files:
        print(f"wrote {plot_file(path, args.out)}")
    return 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
