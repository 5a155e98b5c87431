"""A real RTSP server for the loopback tests: GStreamer's gst-rtsp-server (Debian ``gir1.2-gst-rtsp-server-1.0``)
serving a generated live clip as H.264 over RTP, as an SDI-to-IP encoder or a tower's RTSP output does.

Runs under the system Python, which has PyGObject (``/usr/bin/python3``), not the project's virtual environment:

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /stream       # rtsp://127.0.0.1:8554/stream
    /usr/bin/python3 tests/rtsp_server.py --port 0                          # any free port (printed)
    /usr/bin/python3 tests/rtsp_server.py --check                           # exit 0 if it can run here

The clip is ``videotestsrc is-live=true`` (a moving ball, 25 frames/s, 320x240), encoded by x264 (zerolatency,
a keyframe every 12 frames) or, without x264enc, by libav's H.264 encoder, and payloaded by ``rtph264pay``; the
media is shared, so every client (a reconnect too) sees the same live stream, over TCP or UDP as it asks. It
prints ``READY <port>`` on stdout once it listens; SIGTERM / SIGINT end it. Only the standard library and
GObject introspection are used here, so the file is importable (for :func:`server_command`) without them.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SYSTEM_PYTHON = "/usr/bin/python3"
ENCODERS = (  # the first one GStreamer has is used
    ("x264enc", "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=12 bframes=0"),
    ("avenc_h264", "avenc_h264 gop-size=12 max-bframes=0"),
    ("openh264enc", "openh264enc gop-size=12"),
)


def server_command(port: int, path: str = "/stream") -> list[str]:
    """The command line that starts this server (for the tests' ``subprocess.Popen``)."""
    return [SYSTEM_PYTHON, str(HERE), "--port", str(port), "--path", path]


def launch_line(gst: Any, fps: int, width: int, height: int) -> str:
    """The media's GStreamer launch line, with the first H.264 encoder this GStreamer has."""
    encoder = next((line for name, line in ENCODERS if gst.ElementFactory.find(name) is not None), None)
    if encoder is None:
        raise SystemExit("rtsp_server: no H.264 encoder (install gstreamer1.0-plugins-ugly or gstreamer1.0-libav)")
    return (f"( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={width},height={height},"
            f"framerate={fps}/1 ! {encoder} ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 "
            "config-interval=1 )")


def modules() -> tuple[Any, Any, Any]:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    return GLib, Gst, GstRtspServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8554, help="TCP port of the RTSP server (0: any free one)")
    parser.add_argument("--path", default="/stream", help="mount point of the stream")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", default="320x240", help="WxH")
    parser.add_argument("--check", action="store_true", help="exit 0 if the server and an encoder are available")
    args = parser.parse_args(argv)
    try:
        glib, gst, rtsp = modules()
    except (ImportError, ValueError) as exc:
        print(f"rtsp_server: GStreamer's RTSP server is not available: {exc}", file=sys.stderr)
        return 3
    width, height = (int(v) for v in args.size.split("x"))
    line = launch_line(gst, args.fps, width, height)
    if args.check:
        return 0
    server = rtsp.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = rtsp.RTSPMediaFactory()
    factory.set_launch(line)
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = glib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        glib.unix_signal_add(glib.PRIORITY_DEFAULT, sig, lambda *_: loop.quit() or False)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
