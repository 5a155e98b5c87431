"""Shared pieces of the benchmark scripts: machine description, timing, checkpoints, frames, reports.

Every script writes one JSON file (``machine`` block + the script's own results) and one Markdown table
to ``benchmarks/results/<script>-<machine tag>.{json,md}`` unless told otherwise. Nothing here imports
PyAV or PyQt6 (the GPU machine has neither); library versions are read from package metadata.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.train.media_paths import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
SHARED_DATA = shared_data_dir()
KVASIR_IMAGES = SHARED_DATA / "kvasir-seg" / "images"
CVC_DIR = SHARED_DATA / "cvc-clinicdb"
SAMPLE_CLIP = REPO / "samples" / "colonoscopy_1080p_30f.mp4"
NO_AV_ENV = "POLYP_BENCH_NO_AV"  # "1": behave as if PyAV were not installed (the GPU machine has none)
LIBRARIES = ("torch", "onnxruntime", "numpy", "opencv-python-headless", "av", "psutil", "tensorrt-rtx-cu13")


# ----------------------------------------------------------------------------- machine


def av_available() -> bool:
    """PyAV importable here (and not switched off with ``POLYP_BENCH_NO_AV=1``)."""
    if os.environ.get(NO_AV_ENV) == "1":
        return False
    return importlib.util.find_spec("av") is not None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    """The first CUDA GPU's name, or None (asked through torch only when torch is already importable)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    try:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except RuntimeError:
        return None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def machine_tag(device: str = "auto") -> str:
    """``cpu-2core`` on a CPU run, else the GPU's name as a slug (``nvidia-h100-80gb-hbm3``)."""
    gpu = gpu_name() if device != "cpu" else None
    if gpu:
        return re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"cpu-{cpu_cores()}core"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_info(device: str = "auto") -> dict[str, Any]:
    """Hostname, CPU, cores, GPU, library versions, load, command line and date (UTC)."""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "gpu": gpu_name() if device != "cpu" else None,
        "tag": machine_tag(device),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "load_average_start": load_average(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ----------------------------------------------------------------------------- memory


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is a dev dependency
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Highest RSS this process has had so far (``ru_maxrss``), in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def thread_count() -> int:
    """OS threads of this process (Python threads plus runtime pools)."""
    try:
        import psutil

        return int(psutil.Process().num_threads())
    except ImportError:  # pragma: no cover
        return len(os.listdir("/proc/self/task"))


# ----------------------------------------------------------------------------- timing


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99, min, max of a list of milliseconds (empty -> count 0 only)."""
    if not values_ms:
        return {"count": 0}
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"count": int(arr.size), "mean_ms": round(float(arr.mean()), 4), "p50_ms": round(float(p50), 4),
            "p95_ms": round(float(p95), 4), "p99_ms": round(float(p99), 4), "min_ms": round(float(arr.min()), 4),
            "max_ms": round(float(arr.max()), 4)}


class Timer:
    """Times one call: ``perf_counter`` on the CPU, CUDA events (stream-accurate) on a GPU."""

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            from polyp_live.engines.gpu_check import cuda_event_ms

            return cuda_event_ms(fn)
        begin = time.perf_counter()
        fn()
        return (time.perf_counter() - begin) * 1000.0


def time_rotating(
    fn: Callable[[Any], Any], inputs: Sequence[Any], *, seconds: float, warmup: int = 3, min_runs: int = 5,
    max_runs: int = 100000, cuda: bool = False,
) -> list[float]:
    """Milliseconds per call of ``fn(x)``, ``x`` rotating through ``inputs`` (never the same data twice in a row).

    ``warmup`` untimed calls first, then timed calls until ``seconds`` have passed (at least ``min_runs``).
    """
    timer = Timer(cuda)
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        x = inputs[i % len(inputs)]
        times.append(timer(lambda x=x: fn(x)))
        i += 1
    return times


def finite_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ----------------------------------------------------------------------------- models and frames


def bench_cache_dir() -> Path:
    from polyp_live.engines.cache import cache_dir

    path = cache_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_checkpoint(spec: str, size: int | None = None, workdir: Path | None = None) -> tuple[Path, str]:
    """``random:VARIANT`` (seeded, weights do not change speed), ``default`` or a path -> (checkpoint, note).

    A checkpoint of another input size is re-saved with the contract at ``size``. Random checkpoints are
    kept in the bench cache so their ONNX exports (keyed by the weights' hash) are reused between runs.
    """
    from polyp_live.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.zoo import resolve_checkpoint

    folder = workdir or bench_cache_dir()
    if spec.startswith("random:"):
        import torch

        from polyp_live.train.variants import create_model

        variant = spec.partition(":")[2]
        side = size or 352
        path = folder / f"random-{variant}-{side}.safetensors"
        if not path.is_file() or not path.with_suffix(".json").is_file():
            torch.manual_seed(0)
            model = create_model(variant).eval()
            path = save_checkpoint(folder / f"random-{variant}-{side}", model, ModelContract(variant, (side, side)))
        return path, f"random weights (seed 0), PEFNet-{variant} {side}x{side}"
    path = resolve_checkpoint(spec)
    info = read_checkpoint(path)
    note = f"{spec} ({path.name}, weights {info.weights_sha256[:12]})"
    if size is None or info.contract.input_size == (size, size):
        return path, note
    model, contract, _ = load_checkpoint(path)
    resized = folder / f"{path.stem}-{info.weights_sha256[:12]}-{size}"
    if not resized.with_suffix(".safetensors").is_file():
        save_checkpoint(resized, model, contract.with_size(size))
    return resized.with_suffix(".safetensors"), f"{note} at {size}x{size}"


def default_engine_spec() -> str:
    """``default`` when the bundled model is installed, else random PEFNet-atto weights."""
    from polyp_live.train.zoo import WEIGHTS_DIR

    return "default" if (WEIGHTS_DIR / "default.safetensors").is_file() else "random:atto"


def real_frames(count: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """``count`` RGB frames: a seeded sample of Kvasir-SEG images when present, else synthetic scenes."""
    import cv2

    if KVASIR_IMAGES.is_dir():
        paths = sorted(p for p in KVASIR_IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if paths:
            rng = np.random.default_rng(seed)
            chosen = [paths[i] for i in rng.permutation(len(paths))[:count]]
            frames = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in chosen]
            return frames, f"{len(frames)} Kvasir-SEG images ({KVASIR_IMAGES})"
    return synthetic_frames(count, seed=seed), f"{count} synthetic frames (Kvasir-SEG not found)"


def synthetic_frames(count: int, height: int = 288, width: int = 384, seed: int = 0) -> list[np.ndarray]:
    """Textured frames with a bright blob, different every time (never all zeros)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        base = rng.integers(20, 120, size=(height // 8, width // 8, 3), dtype=np.uint8)
        frame = cv2.resize(base, (width, height), interpolation=cv2.INTER_LINEAR)
        cx, cy = int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4))
        cv2.circle(frame, (cx, cy), int(rng.integers(height // 10, height // 4)), (230, 180, 160), -1)
        frames.append(frame)
    return frames


def default_videos() -> list[Path]:
    """The CVC-ClinicDB clips (when present) and the bundled 1080p sample."""
    clips = sorted(CVC_DIR.glob("seq*/seq*.mp4")) if CVC_DIR.is_dir() else []
    return [*clips, SAMPLE_CLIP] if SAMPLE_CLIP.is_file() else clips


def decode_opencv(path: Path, max_frames: int | None = None) -> tuple[list[np.ndarray], float]:
    """Every frame (up to ``max_frames``) of a video as RGB, decoded with OpenCV; (frames, fps)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        from polyp_live.train.errors import PolypLiveError

        raise PolypLiveError(f"cannot open {path} with OpenCV")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
    frames: list[np.ndarray] = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return frames, fps


def make_memory_source(frames: Sequence[np.ndarray], fps: float, description: str) -> Any:
    """A :class:`polyp_live.realtime.sources.base.Source` that plays frames already in memory (file mode, no
    decoder)."""
    from polyp_live.realtime.sources.base import Source
    from polyp_live.realtime.types import Frame, SourceInfo

    class MemorySource(Source):
        def __init__(self) -> None:
            super().__init__()
            self._next = 0

        def open(self) -> SourceInfo:
            h, w = frames[0].shape[:2]
            self._info = SourceInfo(description, w, h, fps, False, len(frames),
                                    rate=Fraction(fps).limit_denominator(1001))
            return self._info

        def read(self) -> Frame | None:
            if self._next >= len(frames):
                return None
            now = time.monotonic()
            frame = Frame(self._next, frames[self._next], self._next / fps, now, 0.0)
            self._next += 1
            return frame

    return MemorySource()


# ----------------------------------------------------------------------------- reports


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return "" if value is None else str(value).replace("|", "/")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    libs = machine.get("libraries", {})
    load = machine.get("load_average_start")
    return (f"Machine: {machine['hostname']}, {machine['cpu']}, {machine['cores']} cores{gpu}; "
            f"torch {libs.get('torch')}, onnxruntime {libs.get('onnxruntime')}; load average {load}; "
            f"{machine['date_utc']}; `{machine['command']}`")


def default_output(script: str, tag: str, suffix: str) -> Path:
    return RESULTS_DIR / f"{script}-{tag}{suffix}"


def add_engine_args(parser: Any) -> None:
    """The engine options every pipeline-level benchmark takes (read by ``bench_pipeline.open_bench_engine``)."""
    parser.add_argument("--engine", default="auto",
                        help="checkpoint/ONNX path, 'default', or random:VARIANT (auto: default if bundled, "
                             "else random:atto)")
    parser.add_argument("--size", type=int, help="input size for random weights or to resize a checkpoint (256)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--precision", help="fp32 | fp16 | int8 (default: the backend's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, help="CPU threads of the engine")


def add_output_args(parser: Any, script: str) -> None:
    """``--json``, ``--md`` and ``--debug``, the same for every benchmark script."""
    parser.add_argument("--json", type=Path, help=f"JSON output (default benchmarks/results/{script}-TAG.json)")
    parser.add_argument("--md", type=Path, help="Markdown output (default next to the JSON)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")


def write_report(script: str, args: Any, report: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``report`` as JSON and ``markdown`` beside it (``--json`` / ``--md`` or the defaults), print it."""
    json_path = args.json or default_output(script, report["machine"]["tag"], ".json")
    md_path = args.md or json_path.with_suffix(".md")
    write_json(json_path, report)
    write_text(md_path, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return json_path, md_path


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write atomically (a reader or a kill never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
