"""The bundled default model: loads offline and scores what the README's model table says it scores.

The README's row ``| **default** | ...`` states the Dice on the validation parts of Kvasir-SEG and NeoPolyp-Small,
on CVC-ClinicDB (held out whole) and the false-alarm rate on the polyp-free validation sequences; the slow test
evaluates the bundled weights on the same real frames (the generalization mix) and fails if any is off by more
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


MIX = REPO / "train" / "splits" / "generalization.json"
COLUMNS = {  # README column -> (data set in the mix's evaluation, its JSON field, tolerance)
    "Kvasir val Dice": ("kvasir-seg (val)", "dice", 0.02),
    "NeoPolyp val Dice": ("neopolyp-small (val)", "dice", 0.02),
    "CVC-ClinicDB Dice": ("cvc-clinicdb (held out)", "dice", 0.02),
    "false alarms (polyp-free val)": ("polypgen-negatives (val)", "false_alarm_rate", 0.02),
}


def stated(value: str) -> float:
    """A README cell as a number: ``0.889`` or ``0.6 %``."""
    return float(value.rstrip(" %")) / 100 if value.endswith("%") else float(value)


@pytest.mark.slow
def test_default_model_scores_what_the_readme_states(kvasir_dir: Path, neopolyp_dir: Path, negatives_dir: Path,
                                                     cvc_dir: Path, tmp_path: Path, no_network: None) -> None:
    """One polyp-eval run over the generalization mix (its validation parts, CVC-ClinicDB whole), as the README's
    model table was made; every stated column must hold within its tolerance."""
    row = readme_default_row()
    out = tmp_path / "scores.json"
    assert cli_eval.main(["--checkpoint", "default", "--mix", str(MIX), "--data-root", str(kvasir_dir.parent),
                          "--no-progress", "--json", str(out)]) == 0
    sets = {s["name"]: s for s in json.loads(out.read_text())["sets"]}
    for column, (name, field, tolerance) in COLUMNS.items():
        measured = sets[name][field]
        message = f"README says {column} {row[column]}, measured {measured:.4f}"
        assert abs(measured - stated(row[column])) <= tolerance, message
