"""The second fault table: inputs a careful user (or a hostile file) gives that used to crash with a traceback,
report a broken model as "0 polyps", or change the picture. Every input is generated here (PyAV/NumPy/ONNX);
models are a random PEFNet-atto at 64x64 (its ONNX export edited) or a fake engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from realtime import cli
from tests.fault_helpers import check_message, documented_rows, onnx_cache, read_jsonl  # noqa: F401 - fixture
from tests.realtime_fakes import BrightSpotEngine, write_disc_video
from train.cli_utils import run_cli

ROWS = {  # the rows of the fault table (docs/reliability.md) these tests cover, with their exit codes
    "ONNX input or output renamed": 2, "ONNX contract size differs from its graph": 2,
    "ONNX with megabytes of metadata": 2, "sidecar nested thousands deep": 2, "--fps nan, inf, 0 or 1e-300": 2,
    "--device empty or out of range": 2, "--fps / --resolution for a file": 0, "model emits NaN": 2,
}


def polyp_live(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = run_cli(cli.main, [*argv, "--no-view"], prog="polyp-live")
    except SystemExit as exc:  # argparse refuses an option value: usage + one error line, exit 2
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_disc_video(tmp_path / "clip.mp4", 10, faststart=True)


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    engines: list[Any] = []

    def fake(*args: Any, **kwargs: Any) -> BrightSpotEngine:
        engines.append(BrightSpotEngine(64))
        return engines[-1]

    monkeypatch.setattr("engines.registry.open_engine", fake)
    return engines


def edited_onnx(checkpoint: Path, dst: Path, edit: Any) -> Path:
    import onnx

    from engines.cache import cached_onnx

    model = onnx.load(str(cached_onnx(checkpoint)))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def _rename(old: str, new: str) -> Any:
    def edit(model: Any) -> None:
        for value in (*model.graph.input, *model.graph.output):
            if value.name == old:
                value.name = new
        for node in model.graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]

    return edit


def _contract_size(model: Any) -> None:
    from engines.onnx_export import META_CONTRACT

    for prop in model.metadata_props:
        if prop.key == META_CONTRACT:
            contract = json.loads(prop.value)
            contract["input_size"] = [128, 128]
            prop.value = json.dumps(contract)


def _big_metadata(model: Any) -> None:
    model.metadata_props.add(key="notes", value="x" * (5 << 20))


def _nan_output(model: Any) -> None:
    """Multiply the logits by NaN: a graph that loads and runs and whose every output is NaN."""
    import onnx
    from onnx import TensorProto, helper

    for node in model.graph.node:
        node.output[:] = ["raw_logits" if n == "logits" else n for n in node.output]
    model.graph.initializer.append(helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]))
    model.graph.node.append(helper.make_node("Mul", ["raw_logits", "nan"], ["logits"]))
    onnx.checker.check_model(model)


BROKEN_ONNX = [
    ("renamed input", _rename("input", "x"), "the graph's input is ['x'], polyp-live needs one named 'input'"),
    ("renamed output", _rename("logits", "out"), "the graph's output is ['out'], polyp-live needs one named 'logits'"),
    ("contract size", _contract_size, "is ('N', 3, 64, 64) but its contract says (N, 3, 128, 128)"),
    ("5 MB metadata", _big_metadata, "larger than 1048576"),
]


@pytest.mark.usefixtures("onnx_cache")
@pytest.mark.parametrize(("case", "edit", "message"), BROKEN_ONNX, ids=[c[0] for c in BROKEN_ONNX])
def test_a_broken_onnx_is_one_line(case: str, edit: Any, message: str, atto_checkpoint: Path, clip: Path,
                                   tmp_path: Path, capsys) -> None:
    model = edited_onnx(atto_checkpoint, tmp_path / "model.onnx", edit)
    code, _, err = polyp_live(["--input", str(clip), "--engine", str(model), "--jsonl", str(tmp_path / "o.jsonl")],
                              capsys)
    assert code == 2
    check_message(err, code, message)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.usefixtures("onnx_cache")
def test_a_model_that_emits_nan_stops_with_one_line(atto_checkpoint: Path, clip: Path, tmp_path: Path,
                                                    capsys) -> None:
    """It used to report "0 polyps", exit 0: a broken model looked like a clean procedure."""
    model = edited_onnx(atto_checkpoint, tmp_path / "nan.onnx", _nan_output)
    code, out, err = polyp_live(["--input", str(clip), "--engine", str(model), "--jsonl", str(tmp_path / "o.jsonl"),
                                 "--batch", "1"], capsys)
    assert code == 2
    check_message(err, code, f"the model {model} gave non-finite output (NaN or inf) for frame 0")
    assert read_jsonl(tmp_path / "o.jsonl") == []  # no frame was reported as "no polyp"
    assert "polyp-live summary" in out


def test_a_deeply_nested_sidecar_is_one_line(atto_checkpoint: Path, clip: Path, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(atto_checkpoint.read_bytes())
    sidecar = json.loads(atto_checkpoint.with_suffix(".json").read_text())
    text = json.dumps(sidecar)[:-1] + ', "training": ' + "[" * 100_000 + "]" * 100_000 + "}"  # 200 kB, < 1 MiB
    (tmp_path / "model.json").write_text(text)
    code, _, err = polyp_live(["--input", str(clip), "--engine", str(weights), "--backend", "torch"], capsys)
    assert code == 2
    check_message(err, code, "model.json: checkpoint sidecar is nested too deeply")


def test_a_deeply_nested_onnx_contract_is_one_line() -> None:
    from train.contract import ModelContract
    from train.errors import ContractError

    with pytest.raises(ContractError, match="nested too deeply"):
        ModelContract.from_json("[" * 100_000 + "]" * 100_000)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 64, 3), 60 + 40 * i, np.uint8))
    return folder


@pytest.mark.parametrize("fps", ["nan", "inf", "0", "1e-300", "-25"])
def test_an_unusable_fps_is_refused(fps: str, image_folder: Path, tmp_path: Path, fake_engine, capsys) -> None:
    code, _, err = polyp_live(["--input", str(image_folder), "--fps", fps, "--jsonl", str(tmp_path / "o.jsonl")],
                              capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, f"must be a frame rate from 0.1 to 1000 frames/s, got '{fps}'")
    assert not (tmp_path / "o.jsonl").exists()


def test_fps_plays_an_image_folder_at_that_rate(image_folder: Path, tmp_path: Path, fake_engine, capsys) -> None:
    code, _, err = polyp_live(["--input", str(image_folder), "--fps", "4", "--jsonl", str(tmp_path / "o.jsonl")],
                              capsys)
    assert code == 0 and "warning" not in err, err
    assert [r["time"] for r in read_jsonl(tmp_path / "o.jsonl")] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(("device", "message"), [
    ("", "--device needs a capture device, e.g. /dev/video0 or 0"),
    ("99999999999999999999", "capture device index 99999999999999999999 is out of range 0..255"),
])
def test_an_unusable_device_is_one_line(device: str, message: str, fake_engine, capsys) -> None:
    code, _, err = polyp_live(["--device", device], capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, message)


def test_fps_and_resolution_for_a_file_are_said_to_be_ignored(clip: Path, tmp_path: Path, fake_engine,
                                                              capsys) -> None:
    code, _, err = polyp_live(["--input", str(clip), "--fps", "10", "--resolution", "320x240",
                               "--jsonl", str(tmp_path / "o.jsonl")], capsys)
    assert code == 0
    check_message(err, code, f"--resolution and --fps ignored for {clip}: it keeps its own picture size")
    times = [r["time"] for r in read_jsonl(tmp_path / "o.jsonl")]
    assert times == pytest.approx([i / 25 for i in range(10)])  # the file's own 25 fps timestamps


def test_rows_are_in_the_fault_table() -> None:
    rows = documented_rows()
    assert {name: rows.get(name) for name in ROWS} == {name: str(code) for name, code in ROWS.items()}
