"""The TensorRT flavours polyp-live builds and runs with, as one adapter table.

``tensorrt`` (TensorRT 10.x / 11.x) builds for the GPU it runs on and keeps a timing cache;
``tensorrt_rtx`` (TensorRT for RTX) builds without a GPU for chosen compute capabilities and
compiles kernels just in time on the target (its timing cache calls are no-ops). Both parse the
ONNX into a STRONGLY_TYPED network: FP16 comes from the FP16 ONNX and INT8 from a Q/DQ ONNX, never
from builder flags. Nothing is imported until a flavour is asked for.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

from polyp_live.engines.errors import BackendUnavailableError, EngineError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrtFlavour:
    """How one TensorRT Python module differs from the others."""

    name: str  # the module name, also written into engine sidecars
    pip_package: str
    builds_without_gpu: bool  # targets are chosen by compute capability, no GPU needed
    has_timing_cache: bool
    default_targets: tuple[str, ...]  # targets when building without a GPU ("" = the current GPU only)


FLAVOURS: dict[str, TrtFlavour] = {
    flavour.name: flavour
    for flavour in (
        TrtFlavour("tensorrt_rtx", "tensorrt-rtx-cu13", True, False, ("sm86", "sm89", "sm120")),
        TrtFlavour("tensorrt", "tensorrt-cu12", False, True, ()),
    )
}
FLAVOUR_ORDER = ("tensorrt", "tensorrt_rtx")  # "auto": the full TensorRT first when both are installed


def import_flavour(name: str) -> ModuleType:
    """Import a flavour's module or raise :class:`BackendUnavailableError` naming its pip package."""
    if name not in FLAVOURS:
        raise BackendUnavailableError(f"unknown TensorRT flavour {name!r}; known: {', '.join(FLAVOURS)}")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {name} Python module is not installed ({exc}); pip install {FLAVOURS[name].pip_package}"
        ) from None
    except OSError as exc:  # the wheel is there but its shared libraries are not loadable
        raise BackendUnavailableError(f"the {name} module cannot load its libraries: {exc}") from None


def installed_flavours() -> list[str]:
    """Flavours whose module imports here, in preference order."""
    found = []
    for name in FLAVOUR_ORDER:
        try:
            import_flavour(name)
        except BackendUnavailableError:
            continue
        found.append(name)
    return found


def resolve_flavour(name: str = "auto") -> tuple[TrtFlavour, ModuleType]:
    """``"auto"`` picks the first installed flavour; a named one must be installed."""
    if name != "auto":
        module = import_flavour(name)
        return FLAVOURS[name], module
    found = installed_flavours()
    if not found:
        packages = " or ".join(FLAVOURS[n].pip_package for n in FLAVOUR_ORDER)
        raise BackendUnavailableError(f"no TensorRT is installed; pip install {packages}")
    return FLAVOURS[found[0]], import_flavour(found[0])


def parse_targets(text: str | None) -> tuple[str, ...]:
    """``"sm86,sm89,sm120"`` (or ``"86,8.9"``) -> ``("sm86", "sm89", "sm120")``; None/"" -> ``()``."""
    if not text:
        return ()
    targets = []
    for part in str(text).split(","):
        digits = part.strip().lower().removeprefix("sm").replace(".", "")
        if not digits.isdigit():
            raise EngineError(f"bad compute capability {part!r}; use e.g. sm86,sm89,sm120")
        targets.append(f"sm{int(digits)}")
    return tuple(dict.fromkeys(targets))


def compute_capability_enum(module: ModuleType, target: str) -> object:
    """``"sm89"`` -> ``trt.ComputeCapability.SM89`` (TensorRT-RTX); an unsupported one lists the valid ones."""
    members = module.ComputeCapability.__members__
    key = target.upper()
    if key not in members:
        valid = ", ".join(m.lower() for m in members if m.startswith("SM"))
        raise BackendUnavailableError(f"{module.__name__} cannot target {target}; supported: {valid}")
    return members[key]


_SEVERITY_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,  # TensorRT's INFO is chatty; keep it at DEBUG
    "VERBOSE": logging.DEBUG,
}


def make_logger(module: ModuleType, min_severity: str = "WARNING") -> object:
    """A ``module.ILogger`` that sends TensorRT's messages to :mod:`logging` (logger ``engines.tensorrt``)."""
    trt_log = logging.getLogger("engines.tensorrt")

    class LogBridge(module.ILogger):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            module.ILogger.__init__(self)
            self.min_severity = module.ILogger.Severity.__members__[min_severity]

        def log(self, severity: object, msg: str) -> None:
            trt_log.log(_SEVERITY_LEVELS.get(getattr(severity, "name", ""), logging.WARNING), "%s", msg)

    return LogBridge()
