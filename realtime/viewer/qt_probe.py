"""Can the viewer's Qt platform plugin load here? Asked before any ``QApplication`` exists.

When a platform plugin cannot load (a desktop without ``libxcb-icccm4``, a ``DISPLAY`` with no X server
behind it), Qt prints a few lines and aborts the process (SIGABRT, exit 134): no error line, no summary, no
finished MP4. So :func:`viewer_problem` first creates a ``QGuiApplication`` on the same platform in a child
process (with a timeout); when the child fails, it says why in one sentence -- the missing shared libraries
of the plugin (found with ``ldd``) and the ``apt-get install`` line that brings them, or Qt's own reason --
and ``polyp-live`` runs headless instead, writing every output.

The Debian/Ubuntu packages the xcb plugin of the PyQt6 wheels needs are :data:`XCB_PACKAGES` (the README
lists the same line).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PROBE_TIMEOUT_S = 15.0
# Platforms that draw into memory and ship whole in the PyQt6 wheel (tests, CI): not probed, saves ~1 s.
MEMORY_PLATFORMS = ("offscreen", "minimal")
# What Qt 6.5+ needs for its xcb platform plugin on Debian/Ubuntu (Qt's "X11 requirements" page).
XCB_PACKAGES = ("libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
                "libxcb-render-util0", "libxcb-shape0", "libxcb-xfixes0", "libxcb-xinerama0", "libxcb-xkb1",
                "libxkbcommon-x11-0", "libegl1", "libfontconfig1", "libdbus-1-3")
_PROBE = ("import sys\n"
          "from PyQt6.QtGui import QGuiApplication\n"
          "app = QGuiApplication(['polyp-live-probe'])\n"
          "sys.stdout.write(app.platformName())\n")
_NOT_FOUND = re.compile(r"^\s*(\S+\.so[.\d]*)\s+=>\s+not found", re.MULTILINE)


def platform_name(env: dict[str, str] | None = None) -> str:
    """The platform Qt will pick: ``QT_QPA_PLATFORM`` (first of a ``;`` list), else Wayland or xcb."""
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen
    return "wayland" if env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY") else "xcb"


def plugin_file(platform: str) -> Path | None:
    """The PyQt6 wheel's ``libq<platform>.so``, if there is one (found without importing PyQt6)."""
    spec = importlib.util.find_spec("PyQt6")
    if spec is None or not spec.submodule_search_locations:
        return None
    name = "wayland" if platform.startswith("wayland") else platform
    for root in spec.submodule_search_locations:
        path = Path(root) / "Qt6" / "plugins" / "platforms" / f"libq{name}.so"
        if path.is_file():
            return path
    return None


def missing_libraries(plugin: Path) -> list[str]:
    """Shared libraries ``plugin`` needs that the dynamic loader does not find (``ldd``), in order, once each."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(_NOT_FOUND.findall(out)))


def debian_package(soname: str) -> str:
    """Debian's package name for a library soname: ``libxcb-icccm.so.4`` -> ``libxcb-icccm4``,
    ``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0`` (a hyphen when the name ends in a digit)."""
    match = re.fullmatch(r"(.+?)\.so\.?(\d*).*", soname)
    if match is None:
        return soname
    stem, major = match.groups()
    return f"{stem}{'-' if stem[-1].isdigit() and major else ''}{major}".lower()


def _qt_reason(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    useful = [line for line in lines if line.startswith("qt.qpa") or "platform plugin" in line]
    picked = (useful or lines or [f"exit code {returncode}"])[0]
    return picked.removeprefix("qt.qpa.plugin: ").removeprefix("qt.qpa.xcb: ").rstrip(".")


def viewer_problem(env: dict[str, str] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when a Qt GUI application can start here; else one sentence saying why not and what to do."""
    env = dict(os.environ if env is None else env)
    platform = platform_name(env)
    if platform in MEMORY_PLATFORMS:
        return None
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                               timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"the Qt platform plugin {platform!r} did not start within {timeout_s:.0f} s"
    except OSError as exc:
        return f"cannot start a Qt probe: {exc}"
    if child.returncode == 0:
        return None
    plugin = plugin_file(platform)
    missing = missing_libraries(plugin) if plugin is not None else []
    if missing:
        packages = " ".join(dict.fromkeys(debian_package(name) for name in missing))
        return (f"the Qt platform plugin {platform!r} cannot load: missing {', '.join(missing)}; install them "
                f"with: sudo apt-get install {packages}")
    return f"the Qt platform plugin {platform!r} cannot start: {_qt_reason(child.stderr, child.returncode)}"
