"""Display and postprocess settings that the viewer may change while the pipeline runs.

The stages read a frozen :class:`RenderSettings` from a :class:`SettingsBox` once per frame; the viewer
swaps in a new one atomically (``box.update(opacity=0.6)``), so no stage ever sees half an update.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RenderSettings:
    """How masks are made from probabilities and drawn on frames."""

    threshold: float | None = None  # None: the model contract's operating point (polyp_live.train.decision)
    opacity: float = 0.4  # fill opacity in [0, 1]
    show_overlay: bool = True  # False: video passes through unannotated (HUD still drawn)
    show_contour: bool = True
    show_boxes: bool = False
    show_hud: bool = True
    smooth: float = 0.0  # EMA weight of the previous probabilities in [0, 1); 0 = no smoothing
    min_area: float | None = None  # smallest reported region, fraction of the field of view; None: the contract's
    min_score: float | None = None  # lowest reported region score (mean probability); None: the contract's
    color: tuple[int, int, int] = (40, 230, 90)  # RGB of fill and contour

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity}")
        if not 0.0 <= self.smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {self.smooth}")
        for name in ("min_area", "min_score"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name.replace('_', ' ')} must be in [0, 1), got {value}")


class SettingsBox:
    """Thread-safe holder of the current :class:`RenderSettings` (whole-object swaps only)."""

    def __init__(self, settings: RenderSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings or RenderSettings()

    def get(self) -> RenderSettings:
        with self._lock:
            return self._settings

    def set(self, settings: RenderSettings) -> None:
        with self._lock:
            self._settings = settings

    def update(self, **changes: Any) -> RenderSettings:
        """Replace some fields (validated); returns the new settings."""
        with self._lock:
            self._settings = replace(self._settings, **changes)
            return self._settings
