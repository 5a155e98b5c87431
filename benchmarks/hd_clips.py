"""Full-HD colonoscopy clips for the benchmarks, made from the bundled demo clip (no data set needed).

``cvc_1440x1080.mp4``: the 199 real frames of ``samples/cvc_clinicdb_seq01-09.mp4`` (CVC-ClinicDB sequences 1-9,
384x288) scaled 3.75x (Lanczos) to 1440x1080, played twice (398 frames, 25 fps); ``cvc_1920x1080.mp4``: the same
picture inside a tower's 1920x1080 frame (black bars left and right, as endoscopy towers send it). Both H.264
CRF 16 (preset slow), so the source is near lossless for the encoder study. Written once to
``.cache/bench-clips/`` (ignored by git) and reused.

    python benchmarks/hd_clips.py          # prints the two paths (made if missing)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO

DEMO = REPO / "samples" / "cvc_clinicdb_seq01-09.mp4"
FOLDER = REPO / ".cache" / "bench-clips"
PICTURE = (1440, 1080)
TOWER = (1920, 1080)
LOOPS = 2


def _frames() -> list[np.ndarray]:
    import av
    import cv2

    with av.open(str(DEMO)) as container:
        small = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return [cv2.resize(f, PICTURE, interpolation=cv2.INTER_LANCZOS4) for f in small]


def _write(path: Path, frames: list[np.ndarray], size: tuple[int, int]) -> None:
    import av

    tmp = path.with_name(path.name + ".partial.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "16", "preset": "slow"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        left = (size[0] - PICTURE[0]) // 2
        for _ in range(LOOPS):
            for picture in frames:
                canvas = np.zeros((size[1], size[0], 3), np.uint8)
                canvas[:, left : left + PICTURE[0]] = picture
                for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    tmp.replace(path)


def hd_clips() -> list[Path]:
    """The 1440x1080 and 1920x1080 clips, made on first use."""
    paths = [FOLDER / f"cvc_{w}x{h}.mp4" for w, h in (PICTURE, TOWER)]
    if all(p.is_file() for p in paths):
        return paths
    FOLDER.mkdir(parents=True, exist_ok=True)
    frames = _frames()
    for path, size in zip(paths, (PICTURE, TOWER), strict=True):
        if not path.is_file():
            _write(path, frames, size)
    return paths


if __name__ == "__main__":
    for clip in hd_clips():
        print(clip)
