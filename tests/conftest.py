"""Shared fixtures: where the real data lies, and small checkpoints made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("POLYP_LIVE_DATA", REPO.parent / "shared" / "data"))
KVASIR = SHARED_DATA / "kvasir-seg"
CVC = SHARED_DATA / "cvc-clinicdb"
HOLOHUB = SHARED_DATA / "holohub-1080p"
SAMPLE_CLIP = REPO / "samples" / "colonoscopy_1080p_30f.mp4"


def need(path: Path) -> Path:
    """Skip the test, naming the path, when the real data is absent."""
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path


@pytest.fixture(scope="session")
def kvasir_dir() -> Path:
    return need(KVASIR)


@pytest.fixture(scope="session")
def cvc_dir() -> Path:
    return need(CVC)


@pytest.fixture(scope="session")
def holohub_dir() -> Path:
    return need(HOLOHUB)


@pytest.fixture(scope="session")
def atto_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised PEFNet-atto checkpoint at 64x64 (seeded), for engine and pipeline tests."""
    import torch

    from train.checkpoint import save_checkpoint
    from train.contract import ModelContract
    from train.variants import create_model

    torch.manual_seed(0)
    model = create_model("atto").eval()
    path = tmp_path_factory.mktemp("ckpt") / "atto64"
    return save_checkpoint(path, model, ModelContract("atto", (64, 64)))


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every engine ``polyp-live`` opens is a ``BrightSpotEngine`` at 64x64 (``tests/realtime_fakes.py``: it
    finds bright discs); the list holds those opened, so a test can prove that none was."""
    from tests.realtime_fakes import BrightSpotEngine

    engines: list[object] = []

    def fake(*args: object, **kwargs: object) -> BrightSpotEngine:
        engine = BrightSpotEngine(64)
        engines.append(engine)
        return engine

    monkeypatch.setattr("engines.registry.open_engine", fake)
    return engines
