"""A checkpoint on a CPU machine runs its calibrated INT8 companion (``NAME.int8.onnx``) when one lies beside it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from polyp_live.engines import registry
from polyp_live.engines.errors import EngineError
from polyp_live.engines.registry import open_engine
from tests.engines_helpers import balanced_checkpoint, qdq_onnx


def companion_for(checkpoint: Path, source: Path, **props: str) -> Path:
    """Copy ``source`` (an INT8 Q/DQ model) to ``NAME.int8.onnx`` beside ``checkpoint`` with extra metadata."""
    model = onnx.load(str(source))
    merged = {p.key: p.value for p in model.metadata_props} | {"polyp_live.int8_target": "cpu"} | props
    del model.metadata_props[:]
    for key, value in merged.items():
        model.metadata_props.add(key=key, value=value)
    out = checkpoint.with_name(checkpoint.stem + ".int8.onnx")
    onnx.save(model, str(out))
    return out


@pytest.fixture()
def cpu_checkpoint(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The balanced atto checkpoint copied into its own folder (no CUDA, private ONNX cache)."""
    source = balanced_checkpoint(tmp_path_factory)
    for suffix in (".safetensors", ".json"):
        shutil.copy(source.with_suffix(suffix), tmp_path / f"model{suffix}")
    monkeypatch.setenv("POLYP_LIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "cuda_available", lambda: False)
    return tmp_path / "model.safetensors"


def test_calibrated_companion_is_preferred_and_fp32_opts_out(
    cpu_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    companion = companion_for(cpu_checkpoint, qdq_onnx(tmp_path_factory, balanced_checkpoint(tmp_path_factory)))
    caplog.set_level(logging.INFO)
    batch = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with open_engine(cpu_checkpoint) as int8:
        assert (int8.info.backend, int8.info.precision, int8.info.source) == ("onnxruntime", "int8", str(companion))
        quantized = int8.infer(batch)
    assert "INT8 from the calibrated model.int8.onnx" in caplog.text
    with open_engine(cpu_checkpoint, precision="fp32") as fp32:
        assert fp32.info.precision == "fp32" and Path(fp32.info.source).parent.name == "onnx"
        reference = fp32.infer(batch)
    assert np.mean((quantized > 0) == (reference > 0)) >= 0.97  # INT8 of the same weights, not another model


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"polyp_live.int8_target": "tensorrt"}, "INT8 target is 'tensorrt'"),  # symmetric S8: slow on x86
        ({"polyp_live.source_sha256": "0" * 64}, "calibrated from other weights"),
    ],
)
def test_companion_for_other_weights_or_target_is_ignored(
    cpu_checkpoint: Path,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
    props: dict[str, str],
    reason: str,
) -> None:
    companion_for(cpu_checkpoint, qdq_onnx(tmp_path_factory, balanced_checkpoint(tmp_path_factory)), **props)
    with open_engine(cpu_checkpoint) as engine:
        assert engine.info.precision == "fp32"
    assert reason in caplog.text and "recalibrate with polyp-calibrate" in caplog.text


def test_int8_without_companion_says_how_to_calibrate(cpu_checkpoint: Path) -> None:
    with pytest.raises(EngineError, match=r"polyp-calibrate --checkpoint .*model\.int8\.onnx"):
        open_engine(cpu_checkpoint, precision="int8")
