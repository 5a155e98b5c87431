"""The model contract: JSON round trip, validation of keys, types and sizes."""

from __future__ import annotations

import json

import pytest

from polyp_live.train.contract import CONTRACT_SCHEMA, ModelContract, check_input_size
from polyp_live.train.errors import ContractError


def test_round_trip_keeps_every_field() -> None:
    contract = ModelContract("small", (352, 416), mean=(120.0, 110.0, 100.0), std=(60.0, 61.0, 62.0),
                             resize="linear", threshold=0.4)
    again = ModelContract.from_json(contract.to_json())
    assert again == contract
    assert json.loads(contract.to_json())["input_size"] == [352, 416]
    assert again.height == 352 and again.width == 416 and again.schema == CONTRACT_SCHEMA


def test_with_size_and_threshold() -> None:
    contract = ModelContract("atto", (64, 64))
    assert contract.with_size(96).input_size == (96, 96)
    assert contract.with_size(96, 128).input_size == (96, 128)
    assert contract.with_threshold(0.3).threshold == 0.3
    with pytest.raises(ContractError):
        contract.with_size(100)


@pytest.mark.parametrize("side", [1, 31, 33, 100, 5000])
def test_size_not_multiple_of_32_is_refused(side: int) -> None:
    with pytest.raises(ContractError, match="multiple of 32"):
        ModelContract("atto", (side, 64))
    with pytest.raises(ContractError, match="multiple of 32"):
        check_input_size(64, side)


def test_size_error_suggests_valid_sizes() -> None:
    with pytest.raises(ContractError, match=r"use e\.g\. 320 or 352"):
        check_input_size(340, 352)


def test_unknown_key_is_refused_and_named() -> None:
    data = ModelContract("atto", (64, 64)).to_dict()
    data["colour"] = "RGB"
    with pytest.raises(ContractError, match="unknown keys \\['colour'\\]"):
        ModelContract.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("input_size", 352),
        ("input_size", [352]),
        ("input_size", [352.0, 352]),
        ("input_size", [True, 352]),
        ("mean", ["a", "b", "c"]),
        ("mean", [1.0, 2.0]),
        ("std", [0.0, 1.0, 1.0]),
        ("variant", 3),
        ("threshold", 1.5),
        ("threshold", "0.5"),
        ("resize", "cubic"),
        ("color_order", "BGR"),
        ("output", "probabilities"),
        ("schema", "polyp-live.model-contract/0"),
    ],
)
def test_bad_values_are_refused(key: str, value: object) -> None:
    data = ModelContract("atto", (64, 64)).to_dict()
    data[key] = value
    with pytest.raises(ContractError):
        ModelContract.from_dict(data)


def test_not_an_object_or_not_json() -> None:
    with pytest.raises(ContractError, match="JSON object"):
        ModelContract.from_dict(["atto"])
    with pytest.raises(ContractError, match="not valid JSON"):
        ModelContract.from_json("{variant: atto")
    with pytest.raises(ContractError, match="no 'variant'"):
        ModelContract.from_dict({"input_size": [64, 64]})
