"""The CLI's one factory: a capture device, a URL, an image folder or a video file -> a source (not yet opened)."""

from __future__ import annotations

import logging

from polyp_live.realtime.sources.base import Source, locate_input
from polyp_live.realtime.sources.device import CaptureDeviceSource, device_node
from polyp_live.realtime.sources.files import (
    ImageFolderSource,
    VideoFileSource,
)
from polyp_live.realtime.sources.network import NetworkSource
from polyp_live.realtime.sources.reconnect import DEFAULT_RECONNECT_S, ReconnectingSource

logger = logging.getLogger(__name__)


def open_source(
    spec: str, *, fps: float | None = None, resolution: tuple[int, int] | None = None, device: bool = False,
    live: bool | None = None, reconnect_s: float = DEFAULT_RECONNECT_S, rtsp_transport: str | None = None,
    yuv: bool = False,
) -> Source:
    """A source for a CLI argument: a capture device, a URL, an image folder or a video file (not yet opened).

    ``live`` forces the mode (``--live`` / ``--no-live``; ``None``: the input's default); devices are live
    and network streams (:mod:`polyp_live.realtime.sources.network`) reconnect for up to ``reconnect_s`` seconds.
    ``yuv``: a video file hands out 4:2:0 planes (no viewer will paint them; see ``VideoFileSource``)."""
    if device:
        return ReconnectingSource(CaptureDeviceSource(device_node(spec), resolution, fps), max_wait_s=reconnect_s)
    location = locate_input(spec)
    if location.url:
        network = NetworkSource(location, live=live, **({"rtsp_transport": rtsp_transport} if rtsp_transport else {}))
        return ReconnectingSource(network, max_wait_s=reconnect_s)
    if location.path is not None and location.path.is_dir():
        return ImageFolderSource(location.text, fps or 25.0)
    return VideoFileSource(location, live=live, yuv=yuv)
