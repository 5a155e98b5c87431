"""The bundled default model: loads offline and scores what the README's model table says it scores.

The README's row ``| **default** | ...`` states the Kvasir-SEG validation Dice and the CVC-ClinicDB Dice;
these tests evaluate the bundled weights on the same real frames and fail if either number is off by more
than 0.02, so the table stays honest.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from polyp_live.train import cli_eval
from polyp_live.train.checkpoint import read_checkpoint
from polyp_live.train.zoo import resolve_bundled
from tests.conftest import REPO

SPLIT = REPO / "train" / "splits" / "kvasir_seg_600_200.json"


def readme_default_row() -> dict[str, str]:
    """The README model table's header mapped onto its ``**default**`` row."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| **default**"):
            header = next(lines[j] for j in range(i, -1, -1) if lines[j].startswith("| model"))
            keys = [c.strip() for c in header.strip("|").split("|")]
            values = [c.strip() for c in line.strip("|").split("|")]
            return dict(zip(keys, values, strict=True))
    raise AssertionError("README.md has no '| **default**' row in its model table")


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_default_model_loads_offline_with_its_terms(no_network: None) -> None:
    info = read_checkpoint(resolve_bundled("default"))
    assert info.weights_path.stat().st_size < 30 * 1024 * 1024
    assert "Kvasir-SEG" in (info.license or "") and "commercial" in (info.license or "")
    row = readme_default_row()
    assert row["variant"] == info.variant
    assert row["input"].replace("×", "x") == f"{info.contract.height}x{info.contract.width}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("column", "args"),
    [
        ("Kvasir val Dice", ["--data", "{kvasir}", "--split-file", str(SPLIT), "--split", "val"]),
        ("CVC-ClinicDB Dice", ["--data", "{cvc}"]),
    ],
)
def test_default_model_scores_what_the_readme_states(
    column: str, args: list[str], kvasir_dir: Path, cvc_dir: Path, tmp_path: Path, no_network: None
) -> None:
    stated = float(readme_default_row()[column])
    out = tmp_path / "scores.json"
    argv = [a.format(kvasir=kvasir_dir, cvc=cvc_dir) for a in args]
    assert cli_eval.main(["--checkpoint", "default", *argv, "--no-progress", "--json", str(out)]) == 0
    measured = json.loads(out.read_text())["dice"]
    assert abs(measured - stated) <= 0.02, f"README says {column} {stated}, measured {measured:.4f}"
