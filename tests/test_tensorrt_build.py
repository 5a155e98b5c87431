"""TensorRT-RTX engine build on a machine without a GPU, the engine sidecar, and refusing bad engines.

Verified here: a real FP16 plan is built for sm86/sm89/sm120 by tensorrt_rtx without a GPU; its
sidecar validates; truncated plans, plans for another TensorRT version, flavour or GPU, and
missing runtimes each fail with one line (naming how to rebuild) before TensorRT sees the plan.
Running a plan needs a GPU: see the ``tensorrt`` cases of tests/test_engines_parity.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from polyp_live.engines import tensorrt_backend
from polyp_live.engines.errors import BackendUnavailableError, EngineError, EngineMismatchError
from polyp_live.engines.registry import open_engine
from polyp_live.engines.sidecar import read_sidecar, sidecar_path
from polyp_live.train.devices import GpuInfo
from polyp_live.train.hashing import sha256_file
from tests.engines_helpers import (
    DYNAMIC_BATCH,
    balanced_checkpoint,
    built_engine,
    built_qdq_engine,
    exported,
    one_torch_thread,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx-cu13 is not installed")


@pytest.fixture(scope="module")
def engine_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_engine(tmp_path_factory, balanced_checkpoint(tmp_path_factory), flavour="tensorrt_rtx")


def _copy_engine(engine_path: Path, tmp_path: Path, edit: dict | None = None) -> Path:
    plan = tmp_path / "copy.engine"
    shutil.copyfile(engine_path, plan)
    data = json.loads(sidecar_path(engine_path).read_text())
    data.update(edit or {})
    sidecar_path(plan).write_text(json.dumps(data))
    return plan


def _no_gpu_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_backend, "gpu_info", lambda index=0: None)


def test_rtx_fp16_build_without_gpu_writes_plan_and_sidecar(engine_path: Path) -> None:
    sidecar = read_sidecar(engine_path)
    assert engine_path.stat().st_size > 100_000
    assert sidecar.flavour == "tensorrt_rtx" and sidecar.trt_version == trt.__version__
    assert sidecar.precision == "fp16" and sidecar.targets == ("sm86", "sm89", "sm120")
    assert sidecar.builder_gpu == "none" and sidecar.plan_sha256 == sha256_file(engine_path)
    assert (sidecar.batch.min, sidecar.batch.opt, sidecar.batch.max) == DYNAMIC_BATCH
    assert sidecar.contract.input_size == (64, 64)
    assert "--format engine" in sidecar.rebuild_hint(engine_path)


def test_without_gpu_the_plan_cannot_be_deserialized(engine_path: Path) -> None:
    """Documents the limit: TensorRT-RTX checks the header magic, then needs CUDA for anything else."""
    if tensorrt_backend.cuda_available():
        pytest.skip("a GPU is present; the runtime is tested by the parity suite")
    from polyp_live.engines.trt_flavours import make_logger

    runtime = trt.Runtime(make_logger(trt, "INTERNAL_ERROR"))
    assert runtime.deserialize_cuda_engine(engine_path.read_bytes()) is None


def test_loading_without_gpu_is_backend_unavailable(engine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gpu_here(monkeypatch)
    with pytest.raises(BackendUnavailableError, match="run on a CUDA GPU"):
        open_engine(engine_path)


def test_truncated_plan_fails_with_rebuild_hint(engine_path: Path, tmp_path: Path) -> None:
    plan = _copy_engine(engine_path, tmp_path)
    plan.write_bytes(engine_path.read_bytes()[: engine_path.stat().st_size // 2])
    with pytest.raises(EngineMismatchError, match="truncated or modified") as info:
        open_engine(plan)
    assert "\n" not in str(info.value) and "polyp-export --checkpoint" in str(info.value)


def test_other_tensorrt_version_fails_before_tensorrt(engine_path: Path, tmp_path: Path) -> None:
    plan = _copy_engine(engine_path, tmp_path, {"tensorrt": {"flavour": "tensorrt_rtx", "version": "0.9.0"}})
    with pytest.raises(EngineMismatchError, match=r"built with tensorrt_rtx 0\.9\.0 but this machine runs") as info:
        open_engine(plan)
    assert "--format engine --precision fp16 --size 64 --dynamic-batch 1:2:4" in str(info.value)


def test_other_flavour_not_installed_names_the_package(engine_path: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan = _copy_engine(engine_path, tmp_path, {"tensorrt": {"flavour": "tensorrt", "version": "10.9.0"}})
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt-cu12, or rebuild it"):
        open_engine(plan)


def test_missing_runtime_names_the_package(engine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt-rtx-cu13"):
        open_engine(engine_path)


def test_other_gpu_architecture_fails(engine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_backend, "gpu_info", lambda index=0: GpuInfo(0, "Tesla T4", "sm75"))
    with pytest.raises(EngineMismatchError, match=r"built for sm86, sm89, sm120 .* this GPU is sm75"):
        open_engine(engine_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"extra": 1}, "unknown keys"),
        ({"targets": "sm89"}, "'targets' must be a list"),
        ({"plan_sha256": "xyz"}, "64 lowercase hex"),
        ({"precision": "int4"}, "precision 'int4'"),
        ({"batch": {"min": 4, "opt": 1, "max": 2}}, "min <= opt <= max"),
    ],
)
def test_invalid_sidecar_is_one_line(engine_path: Path, tmp_path: Path, edit: dict, message: str) -> None:
    plan = _copy_engine(engine_path, tmp_path, edit)
    with pytest.raises(EngineError, match=message) as info:
        open_engine(plan)
    assert "\n" not in str(info.value)


def test_missing_sidecar_and_random_bytes(tmp_path: Path) -> None:
    plan = tmp_path / "random.plan"
    plan.write_bytes(bytes(range(256)) * 16)
    with pytest.raises(EngineError, match=r"sidecar random\.plan\.json is missing"):
        open_engine(plan)


def test_build_options_and_errors(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    from polyp_live.engines.tensorrt_build import build_engine

    onnx_path = exported(tmp_path_factory, balanced_checkpoint(tmp_path_factory), "fp16", dynamic_batch=DYNAMIC_BATCH)
    with pytest.raises(BackendUnavailableError, match="cannot target sm70"):
        build_engine(onnx_path, tmp_path / "x.engine", flavour="tensorrt_rtx", targets="sm70")
    with pytest.raises(EngineError, match="bad compute capability"):
        build_engine(onnx_path, tmp_path / "x.engine", flavour="tensorrt_rtx", targets="ampere")
    caplog.set_level(logging.INFO)
    result = build_engine(onnx_path, tmp_path / "one.engine", flavour="tensorrt_rtx", targets=["sm89"],
                          workspace_mb=32, timing_cache=tmp_path / "timing.cache", progress=False)
    assert result.sidecar.targets == ("sm89",)
    assert "no timing cache" in caplog.text and not (tmp_path / "timing.cache").exists()


def test_full_tensorrt_cannot_build_without_gpu(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from polyp_live.engines import tensorrt_build

    onnx_path = exported(tmp_path_factory, balanced_checkpoint(tmp_path_factory), "fp16", dynamic_batch=DYNAMIC_BATCH)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt-cu12"):
        tensorrt_build.build_engine(onnx_path, tmp_path / "x.engine", flavour="tensorrt")
    monkeypatch.setattr(tensorrt_build, "resolve_flavour", lambda name: _fake_full_trt())
    monkeypatch.setattr(tensorrt_build, "gpu_info", lambda index=0: None)
    with pytest.raises(BackendUnavailableError, match="builds engines for the GPU it runs on"):
        tensorrt_build.build_engine(onnx_path, tmp_path / "x.engine", flavour="tensorrt")


def _fake_full_trt() -> tuple[object, object]:
    from polyp_live.engines.trt_flavours import FLAVOURS

    return FLAVOURS["tensorrt"], trt  # the RTX module stands in; the GPU check comes first


def test_qdq_onnx_builds_an_int8_engine(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A Q/DQ model (ONNX Runtime static quantization, as polyp-calibrate makes) gives an INT8 plan."""
    plan = built_qdq_engine(tmp_path_factory, balanced_checkpoint(tmp_path_factory))
    sidecar = read_sidecar(plan)
    assert sidecar.precision == "int8" and plan.stat().st_size > 100_000
    assert sidecar.plan_sha256 == sha256_file(plan)
