"""The GPU benchmark run by ``benchmarks/gpu.sh``: PyTorch CUDA FP32 / FP16 / FP16 + CUDA graphs (and
torch.compile when time remains) for PEFNet tiny/small/base at 352x352 and the bundled default model,
then the pipeline on the bundled 1080p clip -- all inside a time budget.

    python3 benchmarks/gpu_bench.py --budget 420 --out "$OUT"
    python3 benchmarks/gpu_bench.py --device cpu --dry-run --budget 30 --out /tmp/x   # CPU check of this script

Work is done in priority order; before each item the elapsed time plus the item's estimate is compared
with the budget, and items that would not fit are recorded as skipped. The JSON (and Markdown) report
is rewritten after every row, so a run killed from outside keeps everything measured so far.
Needs neither PyAV nor PyQt6: the clip is decoded with OpenCV into memory and results go to JSON Lines.
``--dry-run`` swaps the models for PEFNet-atto/femto at 64x64 and, on the CPU, FP16 for FP32, so the
whole path (including the "unavailable" rows for CUDA graphs) runs in seconds without a GPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python3 benchmarks/gpu_bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

STARTED = time.monotonic()  # the budget counts from here (before torch and CUDA start up)
logger = logging.getLogger("benchmarks.gpu_bench")

SCRIPT = "gpu_bench"
SIZE = 352
TARGET_MS = 2.0  # PEFNet-small 352x352 FP16 batch 1 on an H100/H200
DRY_VARIANTS = {"small": "atto", "tiny": "atto", "base": "femto"}
DRY_SIZE = 64
PIPELINE_LOOPS = 4  # the 30-frame clip played 4 times: 120 frames, a steady state worth measuring


@dataclass
class Item:
    """One unit of work: rows from ``bench_case`` calls, or the pipeline benchmark."""

    name: str
    estimate_s: float
    model: str  # random:VARIANT or default
    cases: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (precision, mode, batches)
    pipeline: bool = False


def plan(has_default: bool) -> list[Item]:
    """Everything, most important first (the estimates include loading and the first cuDNN calls)."""
    b1 = (1,)
    items = [
        Item("small 352 fp16 b1 (+CUDA graphs)", 15, "random:small", [("fp16", "eager", b1), ("fp16", "graphs", b1)]),
        Item("default model fp16 b1 (+CUDA graphs)", 12, "default", [("fp16", "eager", b1), ("fp16", "graphs", b1)]),
        Item("tiny 352 fp16 b1 (+CUDA graphs)", 12, "random:tiny", [("fp16", "eager", b1), ("fp16", "graphs", b1)]),
        Item("base 352 fp16 b1 (+CUDA graphs)", 18, "random:base", [("fp16", "eager", b1), ("fp16", "graphs", b1)]),
        Item("small 352 fp32 b1,4 and fp16 b4,16", 25, "random:small",
             [("fp32", "eager", (1, 4)), ("fp16", "eager", (4, 16)), ("fp16", "graphs", (4, 16))]),
        Item("tiny 352 fp32 b1", 10, "random:tiny", [("fp32", "eager", b1)]),
        Item("base 352 fp32 b1", 12, "random:base", [("fp32", "eager", b1)]),
        Item("default model fp32 b1, fp16 b4,16", 15, "default",
             [("fp32", "eager", b1), ("fp16", "eager", (4, 16)), ("fp16", "graphs", (4, 16))]),
        Item("pipeline: 1080p sample, small 352 fp16", 25, "random:small", pipeline=True),
        Item("pipeline: 1080p sample, default model fp16", 20, "default", pipeline=True),
        Item("small 352 fp16 b1 torch.compile", 150, "random:small", [("fp16", "compile-default", b1)]),
    ]
    if not has_default:
        for item in items:
            if item.model == "default":
                item.estimate_s = 0.0
    return items


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = STARTED
        self.device = args.device
        self.dry = args.dry_run
        self.cpu = not args.device.startswith("cuda")
        tag = common.machine_tag(args.device) + ("-dryrun" if self.dry else "")
        self.json_path = args.out / f"{SCRIPT}-{tag}.json"
        self.md_path = self.json_path.with_suffix(".md")
        self.seconds = args.seconds or (1.0 if args.budget < 200 else 2.0)
        self.frames = common.real_frames(4 * 16)[0]  # 4 different batches even at batch 16
        self.report: dict[str, Any] = {
            "kind": SCRIPT, "machine": common.machine_info(args.device), "budget_s": args.budget,
            "dry_run": self.dry, "seconds_per_config": self.seconds, "rows": [], "pipeline": [], "items": [],
            "note": "random weights unless the model is 'default' (speed does not depend on the weights); "
                    "CUDA-event timing of engine.infer on inputs already prepared on the GPU (logits copied back)",
        }
        self._checkpoints: dict[str, tuple[Path, str] | None] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def checkpoint(self, model: str) -> tuple[Path, str] | None:
        if model not in self._checkpoints:
            if model == "default" and common.default_engine_spec() != "default":
                self._checkpoints[model] = None
            elif self.dry:
                variant = DRY_VARIANTS.get(model.partition(":")[2], "atto") if model != "default" else "default"
                spec = f"random:{variant}" if variant != "default" else "default"
                self._checkpoints[model] = common.prepare_checkpoint(spec, DRY_SIZE)
            else:
                self._checkpoints[model] = common.prepare_checkpoint(model, SIZE if model != "default" else None)
        return self._checkpoints[model]

    def precision(self, precision: str) -> str:
        return "fp32" if (self.dry and self.cpu and precision == "fp16") else precision

    def flush(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        self.report["machine"]["load_average_end"] = common.load_average()
        self.report["target"] = target_line(self.report["rows"])
        common.write_json(self.json_path, self.report)
        common.write_text(self.md_path, to_markdown(self.report))

    def run_item(self, item: Item) -> None:
        found = self.checkpoint(item.model)
        if found is None:
            self.report["items"].append({"item": item.name, "status": "skipped",
                                         "reason": "no bundled default model (train/weights/default.safetensors)"})
            return
        checkpoint, note = found
        start = time.monotonic()
        if item.pipeline:
            self.report["pipeline"].append(self.pipeline(checkpoint, note))
        for precision, mode, batches in item.cases:
            from benchmarks.bench_engines import bench_case, print_row

            if self.elapsed() > self.args.budget:
                self.report["items"].append({"item": f"{item.name}: {precision} {mode} {batches}", "status": "skipped",
                                             "reason": "time budget spent"})
                continue
            rows = bench_case(checkpoint, backend="torch", precision=self.precision(precision), mode=mode,
                              batches=batches, seconds=self.seconds, device=self.device, frames=self.frames,
                              threads=1 if self.cpu else None)
            for row in rows:
                row["model"] = note
                print_row(row)
                self.report["rows"].append(row)
            self.flush()
        seconds = round(time.monotonic() - start, 1)
        self.report["items"].append({"item": item.name, "status": "done", "seconds": seconds})

    def pipeline(self, checkpoint: Path, note: str) -> dict[str, Any]:
        from benchmarks import bench_pipeline
        from engines.registry import open_engine

        engine = open_engine(checkpoint, backend="torch", device=self.device, precision=self.precision("fp16"),
                             threads=1 if self.cpu else None)
        try:
            argv = ["--input", str(common.SAMPLE_CLIP), "--decoder", "opencv", "--sink", "jsonl"]
            extra = ["--max-frames", "4"] if self.dry else ["--loops", str(PIPELINE_LOOPS)]
            args = bench_pipeline.build_parser().parse_args(argv + extra)
            result = bench_pipeline.run(args, engine=engine, engine_note=note)
        finally:
            engine.close()
        agg = result["aggregate"]
        print(f"pipeline {note}: {agg['pipeline_fps']:.1f} fps, naive {agg['naive_fps']:.1f} fps, slowest stage "
              f"{agg['slowest_stage']} {agg['slowest_stage_fps']:.1f} fps", flush=True)
        return {k: result[k] for k in ("engine", "engine_note", "decoder", "sink", "note", "inputs", "aggregate",
                                       "verdict")}

    def run(self) -> dict[str, Any]:
        has_default = common.default_engine_spec() == "default"
        items = plan(has_default)
        if self.args.items:
            wanted = {int(n) for n in self.args.items.split(",") if n.strip()}
            items = [item for number, item in enumerate(items, 1) if number in wanted]
        for item in items:
            left = self.args.budget - self.elapsed()
            if item.model == "default" and not has_default:
                self.run_item(item)  # records why it is skipped
                continue
            if item.estimate_s > left:
                reason = f"time budget: {left:.0f} s left, needs ~{item.estimate_s:.0f} s"
                self.report["items"].append({"item": item.name, "status": "skipped", "reason": reason})
                print(f"skipped (budget): {item.name}", flush=True)
                continue
            print(f"[{self.elapsed():5.1f} s] {item.name}", flush=True)
            try:
                self.run_item(item)
            except Exception as exc:  # one failing item must not lose the others
                logger.exception("item %s failed", item.name)
                self.report["items"].append({"item": item.name, "status": "error",
                                             "reason": f"{type(exc).__name__}: {exc}"})
            self.flush()
        return self.report


def target_line(rows: list[dict[str, Any]]) -> str:
    best = [r for r in rows if r.get("status") == "ok" and r["variant"] == "small" and r["size"] == f"{SIZE}x{SIZE}"
            and r["precision"] == "fp16" and r["batch"] == 1]
    if not best:
        return f"PEFNet-small {SIZE}x{SIZE} FP16 batch 1 < {TARGET_MS} ms/frame: not measured"
    row = min(best, key=lambda r: r["ms_per_frame"])
    ok = row["ms_per_frame"] < TARGET_MS
    return (f"PEFNet-small {SIZE}x{SIZE} FP16 batch 1: {row['ms_per_frame']:.3f} ms/frame ({row['mode']}, "
            f"p95 {row['p95_ms']:.3f} ms) target < {TARGET_MS} ms {common.pass_fail(ok)}")


def to_markdown(report: dict[str, Any]) -> str:
    from benchmarks.bench_engines import HEADERS, table_rows

    lines = [f"# GPU benchmark ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
             f"Budget {report['budget_s']} s, used {report.get('elapsed_s')} s; {report['seconds_per_config']} s "
             f"per configuration. {report['note']}.", "", f"**{report.get('target', '')}**", ""]
    lines.append(common.markdown_table(HEADERS, table_rows(report["rows"])))
    for item in report["pipeline"]:
        agg = item["aggregate"]
        lines += ["", f"Pipeline ({item['engine']}, {item['note']}): {agg['frames']} frames, pipeline "
                  f"{agg['pipeline_fps']} fps, naive {agg['naive_fps']} fps, stages (fps) {agg['stage_fps']}", ""]
        lines += [f"- {line}" for line in item["verdict"]]
    lines += ["", "Items:", ""]
    lines += [f"- {i['item']}: {i['status']} {i.get('reason', '') or ''} {i.get('seconds', '')}".rstrip()
              for i in report["items"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 benchmarks/gpu_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=float(os.environ.get("GPU_BENCH_BUDGET_S", 420)),
                        help="seconds for the whole run (default $GPU_BENCH_BUDGET_S or 420)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or common.RESULTS_DIR),
                        help="folder for the JSON/MD report (default $OUT or benchmarks/results)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="tiny models at 64x64 (checks this script)")
    parser.add_argument("--items", help="only these items of the plan, 1-based comma list (default: all, in order)")
    parser.add_argument("--seconds", type=float, help="timed seconds per configuration (default from the budget)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    return parser


def main(argv: list[str] | None = None, on_done: Callable[[dict[str, Any]], None] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.device.startswith("cuda"):
        from train.devices import cuda_available

        if not cuda_available():
            from train.errors import PolypLiveError

            raise PolypLiveError("no CUDA GPU visible to torch; run on a GPU machine or use --device cpu --dry-run")
    runner = Runner(args)
    report = runner.run()
    runner.flush()
    print(to_markdown(report))
    print(f"wrote {runner.json_path} and {runner.md_path}")
    if on_done:
        on_done(report)
    return 1 if any(i["status"] == "error" for i in report["items"]) else 0


if __name__ == "__main__":
    from train.cli_utils import run_cli

    sys.exit(run_cli(main))
