"""H.264 settings for Full-HD recordings: encode time, file size and quality (PSNR against the input), in one run.

The clips of :mod:`benchmarks.hd_clips` (1440x1080 and 1920x1080) are decoded once to 4:2:0 planes in memory, then
encoded by libx264 with each setting as :class:`polyp_live.realtime.sinks.writers.VideoWriterSink` does (no
B-frames, a keyframe a second, yuv420p, planes in: no RGB conversion), timed with the final flush; the output is
decoded again and compared with the input (Y-PSNR over all frames). Settings: presets (``veryfast``, the file
default until now, down to ``ultrafast``), ``tune`` and x264's thread count, each at the default CRF 23 and, for
the faster presets, at the CRF that brings their PSNR back to ``veryfast``'s ("equal quality").

    python benchmarks/bench_encoder.py      # writes benchmarks/results/bench_encoder-<machine>.{json,md}
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_output_args, machine_info, machine_line, markdown_table, write_report
from benchmarks.hd_clips import hd_clips

SCRIPT = "bench_encoder"
# (preset, crf, tune, threads); threads 0 = x264's own choice (1.5 x cores)
SETTINGS = (
    ("veryfast", 23, "", 0),
    ("faster", 23, "", 0),
    ("superfast", 23, "", 0),
    ("superfast", 21, "", 0),
    ("ultrafast", 23, "", 0),
    ("ultrafast", 20, "", 0),
    ("ultrafast", 18, "", 0),
    ("superfast", 21, "fastdecode", 0),
    ("superfast", 21, "", 2),
    ("veryfast", 23, "", 2),
)


def decode_planes(path: Path, limit: int) -> tuple[list[np.ndarray], int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        planes = []
        for frame in container.decode(stream):
            planes.append(frame.to_ndarray(format="yuv420p"))
            if len(planes) >= limit:
                break
        return planes, stream.width, stream.height


def encode(planes: list[np.ndarray], width: int, height: int, preset: str, crf: int, tune: str,
           threads: int) -> tuple[bytes, float]:
    import av

    buffer = io.BytesIO()
    options = {"preset": preset, "crf": str(crf), "bf": "0", "g": "25"}
    if tune:
        options["tune"] = tune
    if threads:
        options["threads"] = str(threads)
    start = time.perf_counter()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for data in planes:
            for packet in stream.encode(av.VideoFrame.from_ndarray(data, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    seconds = time.perf_counter() - start
    return buffer.getvalue(), seconds


def y_psnr(data: bytes, reference: list[np.ndarray], height: int) -> float:
    import av

    errors = []
    with av.open(io.BytesIO(data)) as container:
        for frame, ref in zip(container.decode(video=0), reference, strict=False):
            got = frame.to_ndarray(format="yuv420p")[:height].astype(np.float64)
            errors.append(np.mean((got - ref[:height].astype(np.float64)) ** 2))
    mse = float(np.mean(errors))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure(path: Path, limit: int) -> list[dict[str, Any]]:
    planes, width, height = decode_planes(path, limit)
    rows = []
    for preset, crf, tune, threads in SETTINGS:
        data, seconds = encode(planes, width, height, preset, crf, tune, threads)
        rows.append({"clip": path.name, "size": f"{width}x{height}", "preset": preset, "crf": crf,
                     "tune": tune or "-", "threads": threads or "auto", "frames": len(planes),
                     "encode_ms": round(seconds * 1000.0 / len(planes), 2), "fps": round(len(planes) / seconds, 1),
                     "kb_per_s": round(len(data) * 8 / 1000 / (len(planes) / 25.0), 0),
                     "y_psnr_db": round(y_psnr(data, planes, height), 2)})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    add_output_args(parser, SCRIPT)
    args = parser.parse_args(argv)
    rows = [row for clip in hd_clips() for row in measure(clip, args.frames)]
    machine = machine_info("cpu")
    table = markdown_table(["clip", "preset", "CRF", "tune", "threads", "encode ms/frame", "fps", "kbit/s",
                            "Y-PSNR dB"],
                           [[r["size"], r["preset"], r["crf"], r["tune"], r["threads"], r["encode_ms"], r["fps"],
                             r["kb_per_s"], r["y_psnr_db"]] for r in rows])
    markdown = "\n".join(["# H.264 settings for Full-HD recordings", "", machine_line(machine), "", table])
    write_report(SCRIPT, args, {"machine": machine, "rows": rows}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
