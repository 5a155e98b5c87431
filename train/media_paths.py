"""One resolver for every media path the commands open or write: local files stay local files.

FFmpeg parses the name it is given for a protocol (``file:``, ``pipe:``, ``concat:``, ``subfile,,...``), so
``--output file:case.mp4`` would write ``case.mp4`` (over the input) and ``colon:clip.mp4`` would fail with
"Protocol not found". :func:`locate` decides once what a command-line name is: a URL only when it starts with
a scheme the project supports (``rtsp://``, ``http://``, ...), a local path otherwise, and
:attr:`MediaLocation.ffmpeg` is what FFmpeg is handed: the URL as given, or ``file:`` + the absolute path, which
FFmpeg opens as that very file and never parses further. The no-overwrite guards compare
:attr:`MediaLocation.path`, the file FFmpeg will open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class LiveDefault(str, Enum):
    """How an input of a scheme runs unless ``--live`` / ``--no-live`` says otherwise."""

    LIVE = "live"  # a stream in real time: latest frame wins, stale frames dropped, reconnect
    FILE = "file"  # every frame in order
    PROBE = "probe"  # decided once opened: live when the stream has no duration (an HTTP MPEG-TS feed), else file


# The scheme table: every URL scheme the project opens and its default mode (one home for this fact).
SCHEME_LIVE: dict[str, LiveDefault] = {
    "rtsp": LiveDefault.LIVE, "rtsps": LiveDefault.LIVE, "rtmp": LiveDefault.LIVE, "rtp": LiveDefault.LIVE,
    "udp": LiveDefault.LIVE, "srt": LiveDefault.LIVE, "tcp": LiveDefault.LIVE,
    "http": LiveDefault.PROBE, "https": LiveDefault.PROBE,
}
LIVE_URL_SCHEMES = tuple(scheme for scheme, mode in SCHEME_LIVE.items() if mode is LiveDefault.LIVE)
URL_SCHEMES = tuple(SCHEME_LIVE)


class UnsupportedUrl(ValueError):
    """A name that looks like a URL of a scheme the project does not open."""


@dataclass(frozen=True)
class MediaLocation:
    """What a command-line media name means: a URL of a supported scheme, or an absolute local path."""

    text: str  # as the user gave it (messages say this)
    scheme: str | None = None  # lower-case URL scheme; None: a local path
    path: Path | None = None  # local: absolute; '..' and symlinks left to the OS, as for any other open()

    @property
    def url(self) -> bool:
        return self.scheme is not None

    @property
    def live_default(self) -> LiveDefault:
        """The mode the scheme implies (:data:`SCHEME_LIVE`); local paths are files."""
        return SCHEME_LIVE.get(self.scheme, LiveDefault.FILE) if self.scheme is not None else LiveDefault.FILE

    @property
    def live(self) -> bool:
        """A stream that runs in real time (no end, no seeking) by its scheme alone: the live schemes.
        ``http(s)://`` is :attr:`LiveDefault.PROBE`: decided once opened
        (:mod:`polyp_live.realtime.sources.network`)."""
        return self.live_default is LiveDefault.LIVE

    @property
    def ffmpeg(self) -> str:
        """The name to hand FFmpeg: the URL, or ``file:/abs/path`` (opened as exactly that file)."""
        return self.text if self.path is None else ffmpeg_local(self.path)

    def __str__(self) -> str:
        return self.text


def url_scheme(text: str) -> str | None:
    """The lower-case scheme of ``scheme://...`` or ``None`` (no ``://``)."""
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.isascii() and head.replace("+", "").replace("-", "").isalnum() else None


def locate(text: str | Path) -> MediaLocation:
    """A URL when ``text`` starts with a supported ``scheme://``; else a local path (any characters, colons
    included). A ``scheme://`` name of another scheme that is no existing file raises :class:`UnsupportedUrl`."""
    text = str(text)
    scheme = url_scheme(text)
    if scheme in URL_SCHEMES:
        return MediaLocation(text, scheme)
    if scheme is not None and not Path(text).exists():
        raise UnsupportedUrl(f"{text}: unsupported URL scheme '{scheme}://' (supported: "
                             f"{', '.join(s + '://' for s in URL_SCHEMES)}; anything else is a local file name)")
    return MediaLocation(text, None, local_path(text))


def local_path(text: str | Path) -> Path:
    """The local file ``text`` names, as an absolute path -- never a URL or a protocol. Not normalised:
    ``link/..`` means what the OS makes of it, exactly as for a relative ``open()``."""
    return Path(os.getcwd(), str(text))


def ffmpeg_local(path: str | Path) -> str:
    """The name FFmpeg must be given to open the local file ``path`` and nothing else."""
    return f"file:{local_path(path)}"


def shared_data_dir() -> Path:
    """The real data sets: ``$POLYP_LIVE_DATA``, else ``../shared/data`` beside the repository (a checkout; there is
    no such folder beside an installed package, and nothing is downloaded)."""
    return Path(os.environ.get("POLYP_LIVE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
