"""What finalizing a long recording costs: a fragmented MP4 of N minutes of 1080p25 H.264 -> regular +faststart.

    python benchmarks/bench_finalize.py --minutes 10

Two seconds of the shipped CVC-ClinicDB clip, scaled to 1920x1080 and encoded as the file writer does (libx264
veryfast, crf 23, no B-frames, a keyframe a second), are muxed over and over (packet copy, shifted timestamps)
into a fragmented MP4 like the one :class:`polyp_live.realtime.sinks.writers.VideoWriterSink` writes; then
:func:`polyp_live.realtime.sinks.recording.finalize` is timed on it. The files go to a temporary folder (``--folder``),
removed at the end. Prints one line: minutes, packets, MB, seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "cvc_clinicdb_seq01-09.mp4"
FPS = 25
LOOP_FRAMES = 2 * FPS


def encoded_loop() -> tuple[list[tuple[bytes, bool]], bytes]:
    """``LOOP_FRAMES`` 1080p frames of the clip as H.264 packets (data, keyframe) and the encoder's extradata."""
    import av
    import cv2
    import numpy as np

    from polyp_live.realtime.sinks.recording import keyframe_interval_frames
    from polyp_live.realtime.sinks.writers import DEFAULT_CRF, DEFAULT_PRESET

    with av.open(str(CLIP)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(LOOP_FRAMES), container.decode(video=0),
                                                                 strict=False)]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 1920, 1080, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, FPS), Fraction(FPS)
    encoder.options = {"preset": DEFAULT_PRESET, "crf": str(DEFAULT_CRF), "bf": "0",
                       "g": str(keyframe_interval_frames(FPS))}
    encoder.flags |= av.codec.context.Flags.global_header  # extradata (SPS/PPS) for the MP4's sample entry
    packets = []
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(cv2.resize(rgb, (1920, 1080))), format="rgb24")
        frame.pts = i
        packets += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    packets += [(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    return packets, bytes(encoder.extradata)


def fragmented_recording(path: Path, minutes: float) -> int:
    """Write ``minutes`` of the loop as a fragmented MP4 at ``path``; returns the packet count."""
    import av

    from polyp_live.realtime.sinks.recording import FRAGMENTED_OPTIONS

    packets, extradata = encoded_loop()
    total = round(minutes * 60 * FPS)
    time_base = Fraction(1, FPS)
    with av.open(str(path), "w", format="mp4", options=dict(FRAGMENTED_OPTIONS)) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt, stream.time_base = 1920, 1080, "yuv420p", time_base
        stream.codec_context.extradata = extradata
        for n in range(total):
            data, key = packets[n % len(packets)]
            packet = av.Packet(data)
            packet.pts = packet.dts = n
            packet.time_base, packet.stream, packet.is_keyframe = time_base, stream, key
            out.mux(packet)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--folder", help="where to write the two files (default: a temporary folder)")
    args = parser.parse_args()
    from polyp_live.realtime.sinks.recording import finalize

    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "recording.mp4"
        count = fragmented_recording(path, args.minutes)
        size_mb = path.stat().st_size / 1e6
        start = time.perf_counter()
        if not finalize(path):
            raise SystemExit("finalize failed (see the warning above)")
        seconds = time.perf_counter() - start
    print(f"finalize: {args.minutes:g} min of 1080p{FPS}, {count} packets, {size_mb:.0f} MB: {seconds:.2f} s")


if __name__ == "__main__":
    main()
