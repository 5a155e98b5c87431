"""File mode in 4:2:0 planes against the RGB path, side by side: the same clip through both, mask agreement, the
annotated frames' PSNR, and one PNG (RGB left, planes right) of the frame with the largest mask.

    python benchmarks/overlay_compare.py                      # the 1920x1080 benchmark clip (hd_clips.py), 100 frames
    python benchmarks/overlay_compare.py --input case.mp4 --frames 50

Writes ``benchmarks/results/overlay-rgb-vs-yuv.png`` and ``.md`` (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.types import Result

logger = logging.getLogger("benchmarks.overlay_compare")
OUT = REPO / "benchmarks" / "results" / "overlay-rgb-vs-yuv"


class KeepResults(SinkBase):
    """A sink that keeps every result in memory (short clips only)."""

    name = "keep"

    def __init__(self) -> None:
        self.results: list[Result] = []

    def write(self, result: Result) -> None:
        self.results.append(result)

    def close(self) -> None:
        pass


def run(path: Path, frames: int, yuv: bool) -> list[Any]:
    """The bundled default on ``path`` as polyp-live's file mode runs it, in planes or in RGB."""
    from polyp_live.engines.registry import open_engine
    from polyp_live.realtime.core.pipeline import PipelineConfig, run_to_completion
    from polyp_live.realtime.settings import RenderSettings
    from polyp_live.realtime.sources.files import VideoFileSource

    keep = KeepResults()
    with open_engine("default") as engine:
        source = VideoFileSource(path, yuv=yuv)
        source.open()
        config = PipelineConfig(live=False, max_frames=frames, settings=RenderSettings(show_hud=False))
        run_to_completion(source, engine, config, [keep])
        source.close()
    return keep.results


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="video file (default: the 1920x1080 benchmark clip)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT, help="output stem (.png and .md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import cv2

    from benchmarks.hd_clips import hd_clips

    path = args.input or hd_clips()[1]
    rgb_run, yuv_run = run(path, args.frames, yuv=False), run(path, args.frames, yuv=True)
    if len(rgb_run) != len(yuv_run) or not rgb_run:
        print(f"overlay_compare: error: the runs differ in length ({len(rgb_run)} vs {len(yuv_run)})", file=sys.stderr)
        return 1
    agree = [float(np.mean(a.mask == b.mask)) for a, b in zip(rgb_run, yuv_run, strict=True)]
    looks = [psnr(a.annotated_rgb, b.annotated_rgb) for a, b in zip(rgb_run, yuv_run, strict=True)]
    best = int(np.argmax([int(r.mask.sum()) for r in rgb_run]))
    left, right = rgb_run[best].annotated_rgb, yuv_run[best].annotated_rgb
    gap = np.full((left.shape[0], 16, 3), 255, np.uint8)
    picture = np.concatenate([left, gap, right], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    cv2.imwrite(str(png), cv2.cvtColor(cv2.resize(picture, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                                       cv2.COLOR_RGB2BGR))
    text = (f"# File mode: RGB path vs 4:2:0 planes\n\n`{path.name}` ({left.shape[1]}x{left.shape[0]}), the bundled "
            f"default, {len(rgb_run)} frames, `python benchmarks/overlay_compare.py`.\n\n"
            f"- mask agreement (pixels): mean {np.mean(agree):.5f}, lowest frame {min(agree):.5f} (target >= 0.999)\n"
            f"- annotated frames, PSNR of the planes path against the RGB path: median {np.median(looks):.1f} dB, "
            f"lowest {min(looks):.1f} dB\n- picture: `{png.name}`, frame {best} (the largest mask), RGB path left, "
            f"planes right, half size\n")
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
