"""A live stream sender for the loopback tests and the network benchmark: what an endoscopy tower or an
SDI-to-IP encoder sends, made with PyAV's own muxer (no system FFmpeg needed).

    python -m tests.stream_sender udp://127.0.0.1:5000                     # MPEG-TS over UDP, real time, looping
    python -m tests.stream_sender http://127.0.0.1:8080/live.ts --listen   # serves one HTTP client (FFmpeg listen)
    python -m tests.stream_sender udp://127.0.0.1:5000 --clip samples/cvc_clinicdb_seq01-09.mp4 --seconds 30

It decodes the clip once, then encodes it with x264 (zerolatency, a keyframe every ``--gop`` frames) and muxes
MPEG-TS to the URL, paced in real time (frame k leaves at start + k / fps, never faster) and looping, with
timestamps that keep increasing across loops -- as a tower does. It prints ``READY`` on stdout once the output is
open (for ``--listen``: ``LISTENING`` first, ``READY`` once the client has connected) and then ``SENT <n>`` every
second; SIGTERM/SIGINT end it.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np

DEFAULT_CLIP = Path(__file__).resolve().parents[1] / "samples" / "cvc_clinicdb_seq01-09.mp4"


def load_frames(clip: Path, limit: int | None = None) -> tuple[list[np.ndarray], float]:
    """The clip's frames as RGB arrays and its frame rate (even-sized: H.264 needs even sides)."""
    frames: list[np.ndarray] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])
            if limit is not None and len(frames) >= limit:
                break
    if not frames:
        raise SystemExit(f"stream_sender: no frames in {clip}")
    return frames, fps


class HttpFeed:
    """A one-client HTTP server for an endless MPEG-TS: ``200 OK`` without a length, then the muxer's bytes.
    (FFmpeg's ``listen`` option does not reach the protocol through PyAV's output open, so it is served here.)"""

    def __init__(self, url: str, stop: threading.Event) -> None:
        parsed = urlsplit(url)
        self.server = socket.create_server((parsed.hostname or "127.0.0.1", parsed.port or 80))
        self.server.settimeout(0.2)
        self.stop = stop
        self.client: socket.socket | None = None

    def accept(self) -> bool:
        print("LISTENING", flush=True)
        while not self.stop.is_set():
            try:
                self.client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.client.recv(65536)  # the request (one GET; its path is not checked)
            self.client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nConnection: close\r\n\r\n")
            return True
        return False

    def write(self, data: bytes) -> int:
        if self.client is None:
            raise BrokenPipeError("no client")
        self.client.sendall(data)
        return len(data)

    def close(self) -> None:
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()


def send(url: str, frames: list[np.ndarray], fps: float, *, gop: int, listen: bool, seconds: float | None,
         stop: threading.Event) -> int:
    """Stream ``frames`` in a loop to ``url`` until ``stop`` (or ``seconds``); returns the frames sent."""
    feed = HttpFeed(url, stop) if listen else None
    if feed is not None and not feed.accept():
        return 0
    try:
        with av.open(feed if feed is not None else url, "w", format="mpegts") as container:
            return mux_loop(container, frames, fps, gop=gop, seconds=seconds, stop=stop)
    finally:
        if feed is not None:
            feed.close()


def mux_loop(container: Any, frames: list[np.ndarray], fps: float, *, gop: int, seconds: float | None,
             stop: threading.Event) -> int:
    """Encode and mux frame k at ``start + k / fps`` (never faster), looping over ``frames``."""
    height, width = frames[0].shape[:2]
    stream = container.add_stream("libx264", rate=round(fps), options={
        "preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "keyint_min": str(gop), "bf": "0"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    print("READY", flush=True)
    start = last_report = time.monotonic()
    sent = 0
    while not stop.is_set() and (seconds is None or sent / fps < seconds):
        if stop.wait(max(0.0, start + sent / fps - time.monotonic())):
            break
        frame = av.VideoFrame.from_ndarray(frames[sent % len(frames)], format="rgb24")
        frame.pts = sent
        for packet in stream.encode(frame):
            container.mux(packet)
        sent += 1
        if time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            print(f"SENT {sent}", flush=True)
    return sent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.stream_sender", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="udp://HOST:PORT, or http://HOST:PORT/PATH with --listen")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video to send (the samples/ clip)")
    parser.add_argument("--gop", type=int, default=12, help="frames per keyframe (12)")
    parser.add_argument("--listen", action="store_true", help="serve the stream over HTTP to one client")
    parser.add_argument("--seconds", type=float, help="stop after this much stream time (default: until killed)")
    parser.add_argument("--max-clip-frames", type=int, help="use only the clip's first N frames")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    frames, fps = load_frames(args.clip, args.max_clip_frames)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        send(args.url, frames, fps, gop=args.gop, listen=args.listen, seconds=args.seconds, stop=stop)
    except (av.error.FFmpegError, OSError) as exc:  # the client went away (HTTP) or the port is taken
        print(f"stream_sender: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
