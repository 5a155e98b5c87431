"""Rebuild ``samples/cvc_clinicdb_seq01-09.mp4`` from the CVC-ClinicDB frames (needs the shared data).

    python samples/make_cvc_clip.py [--data ../shared/data/cvc-clinicdb] [--out samples/cvc_clinicdb_seq01-09.mp4]

Sequences 1-9 of CVC-ClinicDB (199 frames, 384x288, every one with a polyp), in order, at 25 fps, H.264
(x264 CRF 24, preset slow, yuv420p, index first): frame i of the clip is the i-th image of seq01/images, then
seq02/images, ... The source frames are PNG (lossless from the original TIFF), so the clip is encoded once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import cv2

REPO = Path(__file__).resolve().parents[1]
SEQUENCES = [f"seq{i:02d}" for i in range(1, 10)]


def frame_files(data: Path) -> list[Path]:
    files: list[Path] = []
    for seq in SEQUENCES:
        files += sorted((data / seq / "images").iterdir())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cvc-clinicdb")
    parser.add_argument("--out", type=Path, default=REPO / "samples" / "cvc_clinicdb_seq01-09.mp4")
    args = parser.parse_args(argv)
    files = frame_files(args.data)
    with av.open(str(args.out), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "24", "preset": "slow"})
        stream.width, stream.height, stream.pix_fmt = 384, 288, "yuv420p"
        for path in files:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    print(f"wrote {args.out}: {len(files)} frames, {args.out.stat().st_size / 1e3:.0f} kB")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
