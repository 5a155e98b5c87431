"""The torch backend's ``compile`` option: static shapes (one graph per batch size), the warm-up that compiles at
load with one log line of its time, masks equal to eager FP32, and one-line errors. On the CPU the tracing runs
through dynamo's ``eager`` backend (CPU inductor builds C++ with gcc: minutes on this shared 2-core machine); the
real inductor + CUDA graphs + FP16 path is the ``gpu`` test (and ``benchmarks/gpu_bench.py`` on a GPU machine)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from polyp_live.engines.errors import EngineError
from polyp_live.engines.parity import compare_logits, parity_frames
from polyp_live.engines.registry import open_engine
from polyp_live.train.devices import cuda_available
from tests.engines_helpers import balanced_checkpoint, one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return balanced_checkpoint(tmp_path_factory)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_warms_up_at_load_and_keeps_the_masks(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames, _ = parity_frames(4)
    with open_engine(checkpoint, backend="torch", device="cpu", batch=2, warmup=False) as eager:
        reference = eager.infer_frames(frames)
    with caplog.at_level(logging.INFO, logger="polyp_live.engines.torch_backend"):
        engine = open_engine(checkpoint, backend="torch", device="cpu", batch=2, compile="default",
                             compile_backend="eager")
    load_lines = [r.getMessage() for r in caplog.records if "at load" in r.getMessage()]
    assert len(load_lines) == 1 and "torch.compile default" in load_lines[0], load_lines
    assert list(engine.compile_seconds) == [1] and engine.compile_seconds[1] >= 0
    assert "compile=default (eager)" in engine.describe()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="polyp_live.engines.torch_backend"):
        got = engine.infer_frames(frames)  # batches of 2: the second batch size compiles on its first call
        engine.infer_frames(frames)
    assert sorted(engine.compile_seconds) == [1, 2]
    assert [r.getMessage() for r in caplog.records if "batch 2 compiled" in r.getMessage()], caplog.text
    assert len([r for r in caplog.records if "compiled" in r.getMessage()]) == 1  # once per batch size
    _, agreement = compare_logits(reference, got, engine.contract.threshold)
    assert agreement >= 0.999 and np.allclose(got, reference, atol=1e-4)
    engine.close()


def test_static_shapes_raise_the_recompile_limit(checkpoint: Path) -> None:
    import torch._dynamo

    with open_engine(checkpoint, backend="torch", device="cpu", batch=16, compile=True, compile_backend="eager"):
        assert torch._dynamo.config.recompile_limit >= 18
        assert torch._dynamo.config.fail_on_recompile_limit_hit  # never silently eager past the limit


def test_compile_errors_are_one_line(checkpoint: Path) -> None:
    import torch._dynamo

    with pytest.raises(EngineError, match=r"compile mode 'fastest' is not one of \['max-autotune'"):
        open_engine(checkpoint, backend="torch", device="cpu", compile="fastest")
    with pytest.raises(EngineError, match="compile_backend is an option of compile"):
        open_engine(checkpoint, backend="torch", device="cpu", compile_backend="eager")
    with pytest.raises(EngineError, match=r"torch\.compile .* failed at load") as info:
        open_engine(checkpoint, backend="torch", device="cpu", compile="default", compile_backend="no-such-backend")
    assert "\n" not in str(info.value)

    @torch._dynamo.register_backend(name="polyp_test_broken")
    def broken(gm, example_inputs):  # dynamo's backend signature
        raise RuntimeError("this backend cannot compile anything")

    with pytest.raises(EngineError, match=r"failed at input \(1, 3, 64, 64\).*open the engine without compile"):
        open_engine(checkpoint, backend="torch", device="cpu", compile="default", compile_backend="polyp_test_broken")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_inductor_fp16_cuda_graphs_keep_the_masks(checkpoint: Path, mode: str) -> None:
    frames, _ = parity_frames(8)
    with open_engine(checkpoint, backend="torch", device="cpu", warmup=False) as cpu:
        reference = cpu.infer_frames(frames)
    with open_engine(checkpoint, backend="torch", device="cuda", precision="fp16", batch=4, compile=mode) as engine:
        assert engine.compile_seconds[1] > 0 and "CUDA graphs" in engine.describe()
        got = np.concatenate([engine.infer(engine.prepare([f])) for f in frames])
        batched = engine.infer_frames(frames)  # batch 4: a second graph
        assert sorted(engine.compile_seconds) == [1, 4]
    for logits in (got, batched):
        _, agreement = compare_logits(reference, logits, engine.contract.threshold)
        assert agreement >= 0.999, (mode, agreement)
