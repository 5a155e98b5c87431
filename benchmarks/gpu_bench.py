"""The GPU benchmark run by ``benchmarks/gpu.sh``, one prepared call inside a time budget: model latency (eager,
CUDA graphs, torch.compile; batch 1 and 16; achieved TFLOP/s), compile parity, GPU preprocessing agreement, and the
pipeline at steady state (1080p file mode, simulated 1080p60 live camera).

    python3 benchmarks/gpu_bench.py --budget 540 --out "$OUT"
    python3 benchmarks/gpu_bench.py --device cpu --dry-run --budget 60 --out /tmp/x   # CPU check of this script

Models: the bundled default (variant and size read from its checkpoint contract, real weights), PEFNet
tiny/small/base at 352 and lite0/lite2 at 256 and 352 (random weights, head bias balanced so half the pixels are
polyp: speed does not depend on the weights, and mask agreement is then a strict test). Every engine is opened
through :func:`polyp_live.engines.registry.open_engine` (torch backend, FP16, channels_last). Latency: CUDA-event
medians of ``engine.infer`` on inputs already prepared on the GPU (logits copied back), rotating over 4 batches of real
frames. FLOPs are counted once per model with ``torch.utils.flop_counter.FlopCounterMode``. Parity: every row's masks
against eager PyTorch FP32 on the CPU, on the same real frames (compiled rows must agree on >= 99.9 %).

Real frames come from ``$POLYP_LIVE_DATA`` (``--data``; ``gpu.sh`` points it at the carried ``.gpu/data``, made by
``benchmarks/gpu_data.sh``), else the bundled ``samples/`` clip. Work runs in the order of :func:`plan`, most
important first; an item whose estimate does not fit in the budget left is recorded as skipped. JSON and Markdown
are rewritten after every row, so a run stopped from outside keeps everything measured so far. No PyAV, PyQt6,
TensorRT or network needed. ``--dry-run`` (with ``--device cpu``) swaps every model for PEFNet-atto / lite0 at
64x64, FP16 for FP32, batch 16 for 2, compile's inductor for dynamo's ``eager`` backend and seconds for fractions:
every path but the CUDA-only ones runs in well under a minute (those become ``unavailable`` rows with the reason).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python3 benchmarks/gpu_bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from benchmarks import gpu_measure as gm
from benchmarks.gpu_report import target_lines, to_markdown

STARTED = time.monotonic()  # the budget counts from here (before torch and CUDA start up)
logger = logging.getLogger("benchmarks.gpu_bench")

SCRIPT = "gpu_bench"
MODES: dict[str, dict[str, Any]] = {
    "eager": {},
    "graphs": {"cuda_graphs": True},
    "compile-ro": {"compile": "reduce-overhead"},  # inductor default kernels + CUDA graphs per batch size
    "compile-ma": {"compile": "max-autotune"},  # autotuned inductor kernels + CUDA graphs per batch size
}
BATCHES = (1, 16)
DRY = {"size": 64, "batches": (1, 2), "parity_frames": 4, "seconds": 0.05}
PIPELINE_LOOPS = 20  # the 30-frame 1080p clip played 20 times: 600 frames of steady state
LIVE = {"fps": 60.0, "width": 1920, "height": 1080, "seconds": 20.0, "warmup_s": 3.0}
DRY_LIVE = {"fps": 30.0, "width": 320, "height": 240, "seconds": 1.0, "warmup_s": 0.3}


@dataclass
class Item:
    """One unit of work and its estimated seconds on an H200 (loading, compiling and timing included)."""

    name: str
    kind: str  # preprocess | latency | pipeline | live
    estimate_s: float
    model: str = "default"  # default | random:VARIANT
    size: int | None = None  # None: the model's own
    modes: tuple[str, ...] = ()
    batches: tuple[int, ...] = BATCHES


def plan(default: tuple[str, int] | None) -> list[Item]:
    """Everything, most important first. ``default``: the bundled model's (variant, size), None when absent."""
    both = ("eager", "graphs")
    items = []
    if default:
        name = f"default ({default[0]} {default[1]})"
        items += [Item("preprocessing: GPU vs CPU on real frames", "preprocess", 10),
                  Item(f"{name} eager + CUDA graphs", "latency", 20, modes=both)]
    items.append(Item("small 352 eager + CUDA graphs", "latency", 25, "random:small", 352, both))
    if default:
        items += [Item("pipeline: 1080p file mode, default, CUDA graphs", "pipeline", 35),
                  Item("live: simulated 1080p60 camera, default, CUDA graphs", "live", 30),
                  Item(f"{name} compiled (reduce-overhead)", "latency", 80, modes=("compile-ro",))]
    items.append(Item("small 352 compiled (reduce-overhead)", "latency", 110, "random:small", 352, ("compile-ro",)))
    items += [Item("tiny 352 eager + CUDA graphs", "latency", 18, "random:tiny", 352, both),
              Item("base 352 eager + CUDA graphs", "latency", 25, "random:base", 352, both)]
    for variant, size in (("lite0", 256), ("lite0", 352), ("lite2", 256), ("lite2", 352)):
        if default != (variant, size):  # the default has real weights at that shape already
            items.append(Item(f"{variant} {size} eager + CUDA graphs", "latency", 15, f"random:{variant}", size, both))
    items += [Item("small 352 compiled (max-autotune) b1", "latency", 180, "random:small", 352, ("compile-ma",), (1,))]
    if default:
        items.append(Item(f"{name} compiled (max-autotune) b1", "latency", 120, modes=("compile-ma",), batches=(1,)))
    items += [Item(f"{v} 352 compiled (reduce-overhead) b1", "latency", 60, f"random:{v}", 352, ("compile-ro",), (1,))
              for v in ("tiny", "base", "lite2")]
    return items


class Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.device, self.dry = args.device, args.dry_run
        self.cpu = not args.device.startswith("cuda")
        tag = common.machine_tag(args.device) + ("-dryrun" if self.dry else "")
        self.json_path = args.out / f"{SCRIPT}-{tag}.json"
        self.md_path = self.json_path.with_suffix(".md")
        self.seconds = args.seconds or (DRY["seconds"] if self.dry else 1.0)
        count = 2 * max(self.batches(BATCHES)) if self.dry else 64  # 4 different batches even at batch 16
        self.frames, origin = gm.data_frames(count)
        self.parity_frames = self.frames[: DRY["parity_frames"] if self.dry else 16]
        self.compile_backend = args.compile_backend or ("eager" if self.dry else "inductor")
        self.report: dict[str, Any] = {
            "kind": SCRIPT, "machine": common.machine_info(args.device), "budget_s": args.budget, "dry_run": self.dry,
            "seconds_per_config": self.seconds, "frames": origin, "compile_backend": self.compile_backend,
            "peak_tflops": gm.PEAK_TFLOPS, "rows": [], "preprocess": [], "pipeline": [], "live": [], "items": [],
        }
        self._models: dict[tuple[str, int | None], tuple[Path, str]] = {}
        self._flops: dict[Path, float | None] = {}
        self._refs: dict[Path, Any] = {}

    # ------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        return time.monotonic() - STARTED

    def batches(self, batches: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted({min(b, max(DRY["batches"])) for b in batches})) if self.dry else batches

    def precision(self) -> str:
        return "fp32" if self.cpu else "fp16"

    def model(self, spec: str, size: int | None) -> tuple[Path, str]:
        key = (spec, DRY["size"] if self.dry else size)
        if key not in self._models:
            if self.dry and spec.startswith("random:"):
                spec = "random:lite0" if "lite" in spec else "random:atto"
            side = key[1] or default_contract()[1]  # type: ignore[index]
            self._models[key] = gm.prepare_model(spec, side, self.workdir)
        return self._models[key]

    def flops(self, checkpoint: Path) -> float | None:
        if checkpoint not in self._flops:
            try:
                self._flops[checkpoint] = gm.count_flops(checkpoint)
            except Exception:  # FLOPs are a column, not a reason to lose the row
                logger.exception("counting FLOPs of %s failed", checkpoint)
                self._flops[checkpoint] = None
        return self._flops[checkpoint]

    def reference(self, checkpoint: Path) -> Any:
        if checkpoint not in self._refs:
            self._refs[checkpoint] = gm.reference_logits(checkpoint, self.parity_frames)
        return self._refs[checkpoint]

    def open(self, checkpoint: Path, mode: str, max_batch: int = 1) -> Any:
        from polyp_live.engines.registry import open_engine

        options = dict(MODES[mode])
        if "compile" in options:
            options["compile_backend"] = self.compile_backend
        return open_engine(checkpoint, backend="torch", device=self.device, precision=self.precision(),
                           batch=max_batch, threads=1 if self.cpu else None, **options)

    def flush(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        self.report["machine"]["load_average_end"] = common.load_average()
        self.report["targets"] = target_lines(self.report)
        common.write_json(self.json_path, self.report)
        common.write_text(self.md_path, to_markdown(self.report))

    # ------------------------------------------------------------------ items

    def run_item(self, item: Item) -> None:
        getattr(self, f"item_{item.kind}")(item)

    def item_latency(self, item: Item) -> None:
        checkpoint, note = self.model(item.model, item.size)
        flops = self.flops(checkpoint)
        batch_in, reference = self.reference(checkpoint)
        for mode in item.modes:
            if self.elapsed() > self.args.budget:
                self.skip(f"{item.name}: {mode}", "time budget spent")
                continue
            for row in self.latency_rows(checkpoint, mode, self.batches(item.batches), flops, batch_in, reference):
                row.update({"model": note, "item": item.name})
                print_row(row)
                self.report["rows"].append(row)
            self.flush()

    def latency_rows(self, checkpoint: Path, mode: str, batches: tuple[int, ...], flops: float | None,
                     batch_in: Any, reference: Any) -> list[dict[str, Any]]:
        from polyp_live.train.checkpoint import read_checkpoint
        from polyp_live.train.errors import PolypLiveError

        contract = read_checkpoint(checkpoint).contract
        base = {"variant": contract.variant, "size": f"{contract.input_size[0]}x{contract.input_size[1]}",
                "backend": "torch", "precision": self.precision(), "mode": mode}
        start = time.perf_counter()
        try:
            engine = self.open(checkpoint, mode, max(batches))
        except PolypLiveError as exc:  # no GPU for CUDA graphs, compile failing, ...
            return [{**base, "batch": b, "status": "unavailable", "reason": str(exc)} for b in batches]
        load_s = round(time.perf_counter() - start, 2)
        try:
            agreement = gm.parity(engine, self.parity_frames, batch_in, reference)
            rows = []
            for b in batches:
                row = {**base, **gm.time_engine(engine, b, self.frames, self.seconds, flops), "load_s": load_s,
                       "describe": engine.describe(), "parity": agreement}
                row["compile_s"] = getattr(engine, "compile_seconds", {}).get(b)
                rows.append(row)
            return rows
        finally:
            engine.close()
            del engine
            release(mode)

    def item_preprocess(self, item: Item) -> None:
        checkpoint, note = self.model("default", None)
        result = gm.preprocessing_agreement(checkpoint, self.parity_frames, self.device)
        result["model"] = note
        print(f"preprocessing GPU vs CPU: max {result['max_abs_grey']} grey levels, masks agree "
              f"{result['mask_agreement_mean'] * 100:.3f} % (min {result['mask_agreement_min'] * 100:.3f} %)")
        self.report["preprocess"].append(result)

    def pipeline_engine(self) -> tuple[Any, str]:
        checkpoint, note = self.model("default", None)
        return self.open(checkpoint, "eager" if self.cpu else "graphs"), note

    def item_pipeline(self, item: Item) -> None:
        engine, note = self.pipeline_engine()
        try:
            loops, limit = (1, 4) if self.dry else (PIPELINE_LOOPS, None)
            result = gm.pipeline_file(engine, note, common.SAMPLE_CLIP, loops, limit)
        finally:
            engine.close()
        print(f"pipeline {result['size']}: {result['pipeline_fps']:.1f} fps (naive {result['naive_fps']:.1f}), bound "
              f"by {result['bounding_stage']} at {result['bounding_stage_fps']:.1f} fps", flush=True)
        self.report["pipeline"].append(result)

    def item_live(self, item: Item) -> None:
        engine, note = self.pipeline_engine()
        try:
            result = gm.pipeline_live(engine, note, **(DRY_LIVE if self.dry else LIVE))
        finally:
            engine.close()
        print(f"live {result['camera']}: display p95 {result['display_p95_ms']} ms, mask age p95 "
              f"{result['mask_age_p95_ms']} ms, drop rate {result['drop_rate']}, drops {result['drops']}", flush=True)
        self.report["live"].append(result)

    def skip(self, name: str, reason: str) -> None:
        self.report["items"].append({"item": name, "status": "skipped", "reason": reason})
        print(f"skipped: {name} ({reason})", flush=True)

    @staticmethod
    def dry_key(item: Item) -> tuple[str, ...]:
        """What an item runs in a dry run, where every model maps to a tiny one: compiling is one path whatever
        the model and mode (dynamo's eager backend on the CPU); otherwise the tiny model (default, a ConvNeXt or a
        Lite one) and the modes."""
        if any(m.startswith("compile") for m in item.modes):
            return item.kind, "compile"
        spec = item.model if item.model == "default" else ("lite" if "lite" in item.model else "convnext")
        return item.kind, spec, *item.modes

    def run(self, items: list[Item]) -> dict[str, Any]:
        seen: set[tuple[str, ...]] = set()
        for item in items:
            left = self.args.budget - self.elapsed()
            if (0.0 if self.dry else item.estimate_s) > left:  # a dry run runs all while the budget lasts
                self.skip(item.name, f"time budget: {left:.0f} s left, needs ~{item.estimate_s:.0f} s")
                continue
            if self.dry and self.dry_key(item) in seen:
                self.skip(item.name, "dry run: the same tiny model and code path as an earlier item")
                continue
            seen.add(self.dry_key(item))
            print(f"[{self.elapsed():5.1f} s] {item.name}", flush=True)
            start = time.monotonic()
            try:
                self.run_item(item)
                self.report["items"].append({"item": item.name, "status": "done",
                                             "seconds": round(time.monotonic() - start, 1)})
            except Exception as exc:  # one failing item must not lose the others
                logger.exception("item %s failed", item.name)
                self.report["items"].append({"item": item.name, "status": "error",
                                             "reason": f"{type(exc).__name__}: {exc}"})
            self.flush()
        return self.report


def release(mode: str) -> None:
    """Free what an engine held: compiled graphs live on in dynamo's caches (keyed by the forward's code, so models
    would add up to the recompile limit) and CUDA memory in the caching allocator."""
    gc.collect()
    if mode.startswith("compile"):
        import torch._dynamo

        torch._dynamo.reset()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def default_contract() -> tuple[str, int] | None:
    """The bundled default's (variant, input side) from its checkpoint contract; None when it is not installed."""
    from polyp_live.train.checkpoint import read_checkpoint
    from polyp_live.train.zoo import WEIGHTS_DIR

    path = WEIGHTS_DIR / "default.safetensors"
    if not path.is_file():
        return None
    contract = read_checkpoint(path).contract
    return contract.variant, int(contract.input_size[0])


def print_row(row: dict[str, Any]) -> None:
    head = f"{row['variant']:>6} {row['size']:>7} {row['precision']} {row['mode']:>10} b{row['batch']:<3}"
    if row.get("status") != "ok":
        print(f"{head} {row.get('status')}: {row.get('reason', '')}", flush=True)
        return
    agree = row.get("parity", {}).get("cpu_preprocess", {}).get("agreement")
    print(f"{head} {row['median_ms']:8.3f} ms (p95 {row['p95_ms']:.3f}) {row['ms_per_frame']:.3f} ms/frame "
          f"{row.get('tflops') or 0:.2f} TFLOP/s, masks agree {agree}, compile {row.get('compile_s')} s", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 benchmarks/gpu_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=float(os.environ.get("GPU_BENCH_BUDGET_S", 540)),
                        help="seconds for the whole run (default $GPU_BENCH_BUDGET_S or 540)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or common.RESULTS_DIR),
                        help="folder for the JSON/MD report (default $OUT or benchmarks/results)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="tiny models at 64x64, fractions of seconds")
    parser.add_argument("--data", type=Path, help="real frames folder (default $POLYP_LIVE_DATA or ../shared/data)")
    parser.add_argument("--items", help="only these items of the plan, 1-based comma list (default: all, in order)")
    parser.add_argument("--seconds", type=float, help="timed seconds per configuration (default 1; dry run 0.05)")
    parser.add_argument("--compile-backend", help="dynamo backend for the compiled rows (inductor; dry run: eager)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    return parser


def main(argv: list[str] | None = None, on_done: Callable[[dict[str, Any]], None] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from polyp_live.train.errors import PolypLiveError

    if args.data:
        os.environ["POLYP_LIVE_DATA"] = str(args.data.resolve())
    if args.device.startswith("cuda"):
        from polyp_live.train.devices import cuda_available

        if not cuda_available():
            raise PolypLiveError("no CUDA GPU visible to torch; run on a GPU machine or use --device cpu --dry-run")
    elif not args.dry_run:
        raise PolypLiveError("--device cpu runs only as a check of this script: add --dry-run")
    items = plan(default_contract())
    if args.items:
        wanted = {int(n) for n in args.items.split(",") if n.strip()}
        items = [item for number, item in enumerate(items, 1) if number in wanted]
    if args.dry_run and not args.device.startswith("cuda"):
        import torch

        torch.set_num_threads(1)  # a check of the paths, not of speed: on a shared CPU one thread runs fastest
    with gm.workdir() as tmp:
        runner = Runner(args, Path(tmp))
        report = runner.run(items)
        runner.flush()
    print(to_markdown(report))
    print(f"wrote {runner.json_path} and {runner.md_path}")
    if on_done:
        on_done(report)
    return 1 if any(i["status"] == "error" for i in report["items"]) else 0


if __name__ == "__main__":
    from polyp_live.train.cli_utils import run_cli

    sys.exit(run_cli(main))
