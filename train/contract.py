"""The model contract: everything a runtime must know to feed the model and read its output.

It is defined once, here, and travels with every artifact: the checkpoint's JSON sidecar,
the ONNX ``metadata_props`` and the TensorRT engine sidecar all store :meth:`ModelContract.to_dict`.
Training, runtime and calibration all preprocess through :mod:`polyp_live.train.preprocess`, which reads
nothing but this contract.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from polyp_live.train.errors import ContractError

CONTRACT_SCHEMA = "polyp-live.model-contract/1"
SIZE_MULTIPLE = 32
# PEFNet is trained and run at 192..352; at 1024 one frame's activations take ~0.3 GB (atto, CPU) and the ONNX
# export's parity check runs a batch of 16. A 4096x4096 contract was OOM-killed at 24 GB while exporting.
MAX_INPUT_SIDE = 1024
RESIZE_MODES = ("area", "linear")
# The frame-level decision's defaults (the operating point of a model that was not given one): regions smaller than
# this fraction of the field of view are not reported (the realtime default before operating points existed), and
# any region score counts.
DEFAULT_MIN_AREA = 0.0005
DEFAULT_MIN_SCORE = 0.0
COLOR_ORDERS = ("RGB",)
OUTPUTS = ("logits",)


def check_input_size(height: int, width: int) -> tuple[int, int]:
    """Return ``(height, width)`` if the model accepts it, else raise :class:`ContractError`."""
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, int):
            raise ContractError(f"input {name} must be an integer, got {side!r}")
        if side > MAX_INPUT_SIDE:
            raise ContractError(f"input {name} {side} is larger than PEFNet models are run at (at most "
                                f"{MAX_INPUT_SIDE}, a multiple of {SIZE_MULTIPLE}; they are trained at 192-352)")
        if side < SIZE_MULTIPLE or side % SIZE_MULTIPLE:
            lower = max(SIZE_MULTIPLE, side // SIZE_MULTIPLE * SIZE_MULTIPLE)
            raise ContractError(
                f"input {name} {side} is not a multiple of {SIZE_MULTIPLE} in "
                f"[{SIZE_MULTIPLE}, {MAX_INPUT_SIDE}]; use e.g. {lower} or {lower + SIZE_MULTIPLE}"
            )
    return height, width


@dataclass(frozen=True)
class ModelContract:
    """How frames go into the model and how its output is read.

    Pixels are RGB ``uint8``; the model sees ``(pixel - mean) / std`` per channel, which with
    the defaults maps ``[0, 255]`` to ``[-1, 1]`` as in the paper. The output is one channel of
    logits at the input size; a pixel is polyp when ``sigmoid(logit) >= threshold``.

    Geometry: with ``field_of_view`` the frame is first cropped to the endoscope's picture
    (:mod:`polyp_live.train.fov`); with ``keep_aspect`` the crop is scaled to fit the input and padded with black
    (letterbox) instead of squashed (:mod:`polyp_live.train.preprocess`). Both off: the whole frame is squashed,
    as models trained before field-of-view cropping expect.

    The operating point (:mod:`polyp_live.train.decision`): a connected region of polyp pixels is reported when it
    covers at least ``min_area`` of the field of view and its score (mean probability) is at least ``min_score``;
    a frame shows a polyp when it has a reported region.
    """

    variant: str
    input_size: tuple[int, int] = (352, 352)  # (height, width)
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    color_order: str = "RGB"
    resize: str = "area"
    threshold: float = 0.5
    output: str = "logits"
    field_of_view: bool = False
    keep_aspect: bool = False
    min_area: float = DEFAULT_MIN_AREA
    min_score: float = DEFAULT_MIN_SCORE
    schema: str = field(default=CONTRACT_SCHEMA)

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant:
            raise ContractError(f"contract variant must be a non-empty string, got {self.variant!r}")
        check_input_size(*self.input_size)
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(_is_finite_number(v) for v in values):
                raise ContractError(f"contract {name} must be 3 finite numbers, got {values!r}")
        if any(v <= 0 for v in self.std):
            raise ContractError(f"contract std must be positive, got {self.std!r}")
        if not _is_finite_number(self.threshold) or not 0.0 < self.threshold < 1.0:
            raise ContractError(f"contract threshold must be in (0, 1), got {self.threshold!r}")
        for name in ("field_of_view", "keep_aspect"):
            if not isinstance(getattr(self, name), bool):
                raise ContractError(f"contract {name} must be true or false, got {getattr(self, name)!r}")
        for name in ("min_area", "min_score"):
            value = getattr(self, name)
            if not _is_finite_number(value) or not 0.0 <= value < 1.0:
                raise ContractError(f"contract {name} must be in [0, 1), got {value!r}")
        _check_choice("color_order", self.color_order, COLOR_ORDERS)
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_choice("output", self.output, OUTPUTS)
        if self.schema != CONTRACT_SCHEMA:
            raise ContractError(
                f"contract schema {self.schema!r} is not supported (expected {CONTRACT_SCHEMA!r}); "
                "re-export the artifact with this version of polyp-live"
            )

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]

    def with_size(self, height: int, width: int | None = None) -> ModelContract:
        """The same contract at another input size (square when ``width`` is omitted)."""
        return replace(self, input_size=check_input_size(height, height if width is None else width))

    def with_threshold(self, threshold: float) -> ModelContract:
        return replace(self, threshold=float(threshold))

    def with_operating_point(self, threshold: float, min_area: float, min_score: float) -> ModelContract:
        """The same contract with another frame-level decision (validated)."""
        return replace(self, threshold=float(threshold), min_area=float(min_area), min_score=float(min_score))

    def with_geometry(self, field_of_view: bool, keep_aspect: bool) -> ModelContract:
        """The same contract with field-of-view cropping and letterboxing turned on or off."""
        return replace(self, field_of_view=bool(field_of_view), keep_aspect=bool(keep_aspect))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelContract:
        """Validate a decoded JSON object (types, ranges, known keys) and build a contract."""
        if not isinstance(data, dict):
            raise ContractError(f"model contract must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(f"model contract has unknown keys {unknown}; known keys: {sorted(known)}")
        if "variant" not in data:
            raise ContractError("model contract has no 'variant'")
        kwargs = dict(data)
        for key in ("input_size", "mean", "std"):
            if key in kwargs:
                value = kwargs[key]
                if not isinstance(value, (list, tuple)):
                    raise ContractError(f"model contract {key} must be a list, got {value!r}")
                kwargs[key] = tuple(value)
        if "input_size" in kwargs and len(kwargs["input_size"]) != 2:
            raise ContractError(f"model contract input_size must be [height, width], got {data['input_size']!r}")
        for key in ("variant", "color_order", "resize", "output", "schema"):
            if key in kwargs and not isinstance(kwargs[key], str):
                raise ContractError(f"model contract {key} must be a string, got {kwargs[key]!r}")
        try:
            return cls(**kwargs)
        except TypeError as exc:  # e.g. a number where a list belongs
            raise ContractError(f"model contract is malformed: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"model contract is not valid JSON: {exc}") from None
        except RecursionError:
            raise ContractError("model contract is nested too deeply to be a contract") from None
        return cls.from_dict(data)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ContractError(f"contract {name} {value!r} is not one of {list(choices)}")
