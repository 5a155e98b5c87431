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

from polyp_live.train.alarm import DEFAULT_ON_FRAMES
from tests.fault_helpers import check_message, documented_rows, onnx_cache, read_jsonl  # noqa: F401 - fixture
from tests.realtime_fakes import BrightSpotEngine, disc_image, polyp_live, ts_segment, write_disc_video

ROWS = {  # the rows of the fault table (docs/reliability.md) these tests cover, with their exit codes
    "ONNX input or output renamed": 2, "ONNX contract size differs from its graph": 2,
    "ONNX with megabytes of metadata": 2, "sidecar nested thousands deep": 2, "--fps nan, inf, 0 or 1e-300": 2,
    "--device empty or out of range": 2, "--fps / --resolution for a file": 0, "model emits NaN": 2,
    "image folder: mixed sizes, numbered names, truncated JPEG": 0, "resolution change mid-stream": 0,
    "timestamps going backward": 0, "file with a start offset": 0, "1-pixel-high input": 0,
}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_disc_video(tmp_path / "clip.mp4", 10, faststart=True)


def edited_onnx(checkpoint: Path, dst: Path, edit: Any) -> Path:
    import onnx

    from polyp_live.engines.cache import cached_onnx

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
    from polyp_live.engines.onnx_format import META_CONTRACT

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
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.errors import ContractError

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


# --------------------------------------------------------------------------- image folders: order and geometry
def disc_mask(width: int, height: int) -> np.ndarray:
    return (disc_image(width, height)[..., 0] > 128).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))


SIZES = {"1.png": (128, 96), "2.png": (60, 120), "10.jpg": (200, 100), "11.png": (8, 6)}  # name: (w, h)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Images of four sizes (one portrait, one 8x6) whose names sort 1, 10, 11, 2 as text; a truncated JPEG."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, (w, h) in SIZES.items():
        cv2.imwrite(str(folder / name), disc_image(w, h))
    cv2.imwrite(str(folder / "3.jpg"), disc_image(128, 96))
    data = (folder / "3.jpg").read_bytes()
    (folder / "3.jpg").write_bytes(data[: len(data) * 2 // 3])  # the camera stopped mid-write
    return folder


def test_image_folder_natural_order_own_sizes_truncated_jpeg_skipped(mixed_folder: Path, tmp_path: Path,
                                                                     fake_engine, capsys, caplog) -> None:
    out, masks, jsonl = tmp_path / "o.mp4", tmp_path / "masks", tmp_path / "o.jsonl"
    code, _, err = polyp_live(["--input", str(mixed_folder), "--output", str(out), "--masks", str(masks),
                               "--jsonl", str(jsonl), "--fps", "5"], capsys)
    assert code == 0, err
    check_message(err, code, "1 packet(s) could not be decoded and were skipped", caplog.text)
    assert "skipping" in caplog.text and "3.jpg: truncated JPEG" in caplog.text
    records = read_jsonl(jsonl)
    order = ["1.png", "2.png", "10.jpg", "11.png"]  # natural order; 3.jpg skipped, never fed with grey rows
    assert [tuple(r["size"]) for r in records] == [SIZES[name] for name in order]
    for record, name in zip(records, order, strict=True):
        w, h = SIZES[name]
        mask = cv2.imread(str(masks / f"frame_{record['index']:06d}.png"), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (h, w)  # each mask at its own image's size
        if min(w, h) >= 48:  # the disc is found where it is: the image was not stretched to another shape
            assert iou(mask > 0, disc_mask(w, h) > 0) > 0.8, name
            x0, y0, x1, y1 = record["regions"][0]["box"]
            assert abs((x0 + x1) / 2 - w * 3 / 4) <= 2 and abs((y0 + y1) / 2 - h * 3 / 4) <= 2


def test_the_mp4_letterboxes_other_sizes_never_crops_or_stretches(mixed_folder: Path, tmp_path: Path,
                                                                  fake_engine, capsys, caplog) -> None:
    import av

    out = tmp_path / "o.mp4"
    code, _, err = polyp_live(["--input", str(mixed_folder), "--output", str(out), "--opacity", "0"], capsys)
    assert code == 0, err
    assert "such frames are scaled to fit" in caplog.text and caplog.text.count("scaled to fit") == 1
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and all(f.shape == (96, 128, 3) for f in frames)  # the first image's size
    portrait = frames[1]  # 60x120 scaled by 0.8 to 48x96, centred: black bars of 40 px left and right
    assert portrait[:, :36].max() < 40 and portrait[:, -36:].max() < 40
    bright = portrait[..., 1] > 150
    ys, xs = np.nonzero(bright)
    assert abs(xs.mean() - (40 + 48 * 3 / 4)) <= 2 and abs(ys.mean() - 96 * 3 / 4) <= 2  # disc where it was
    wide = frames[2]  # 200x100 scaled by 0.64 to 128x64: bars top and bottom
    assert wide[:14].max() < 40 and wide[-14:].max() < 40


# --------------------------------------------------------------------------- streams: size change, time base
@pytest.fixture
def joined_ts(tmp_path: Path) -> Path:
    """Two recorder segments joined by byte concatenation: 96x64 then 192x144, each with pts from 0."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(ts_segment(tmp_path / "a.ts", 96, 64, 10) + ts_segment(tmp_path / "b.ts", 192, 144, 10))
    return joined


def test_a_size_change_mid_stream_is_scaled_not_cropped(joined_ts: Path, tmp_path: Path, fake_engine, capsys,
                                                        caplog) -> None:
    import av

    out, jsonl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    code, _, err = polyp_live(["--input", str(joined_ts), "--output", str(out), "--jsonl", str(jsonl),
                               "--opacity", "0", "--alarm-on", "1000"], capsys)  # no alarm border: the picture alone
    assert code == 0, err
    assert caplog.text.count("such frames are scaled to fit") == 1  # warned once
    records = read_jsonl(jsonl)
    assert [tuple(r["size"]) for r in records] == [(96, 64)] * 10 + [(192, 144)] * 10
    big = records[15]["regions"][0]["box"]  # boxes in the frame's own pixels: the disc at (144, 108)
    assert abs((big[0] + big[2]) / 2 - 144) <= 2 and abs((big[1] + big[3]) / 2 - 108) <= 2
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 20 and {f.shape for f in frames} == {(64, 96, 3)}
    # the whole 192x144 picture scaled by 64/144 to 85x64 and centred (5 px bars): the disc lies at (69, 48);
    # a crop to the top-left 96x64 would show no disc at all
    ys, xs = np.nonzero(frames[15][..., 1] > 150)
    assert abs(xs.mean() - 69) <= 2 and abs(ys.mean() - 48) <= 2
    assert frames[15][:, :4].max() < 40 and frames[15][:, -4:].max() < 40


def test_timestamps_going_backward_are_rebased_monotonic(joined_ts: Path, tmp_path: Path, fake_engine, capsys,
                                                         caplog) -> None:
    from tests.realtime_fakes import probe

    out, jsonl, stats = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "s.json"
    code, _, err = polyp_live(["--input", str(joined_ts), "--output", str(out), "--jsonl", str(jsonl),
                               "--stats", str(stats)], capsys)
    assert code == 0, err
    assert "timestamps go back by" in caplog.text
    times = [r["time"] for r in read_jsonl(jsonl)]
    assert times == pytest.approx([i * 0.04 for i in range(20)], abs=1e-6)  # one time base, 25 fps throughout
    gaps = read_jsonl(jsonl, events=True)  # the re-base is recorded just before the frame at 0.4 s
    assert [(g["event"], g["reason"], g["time"]) for g in gaps] == [("gap", "clock jump", pytest.approx(0.4))]
    assert [g["reason"] for g in json.loads(stats.read_text())["gaps"]] == ["clock jump"]
    assert probe(out)["duration"] == pytest.approx(0.8, abs=0.05)  # not the second half squeezed into 1/90000 s
    # the alarm turns on after DEFAULT_ON_FRAMES frames with a region and off at the clock jump (another moment of
    # the procedure), then on again: two episodes, both in the re-based time
    late = (DEFAULT_ON_FRAMES - 1) * 0.04
    episodes = [(e["start_time"], e["end_time"]) for e in json.loads(stats.read_text())["episodes"]]
    assert episodes == [pytest.approx((late, 0.36), abs=1e-6), pytest.approx((0.4 + late, 0.76), abs=1e-6)]


def test_a_start_offset_is_removed_from_every_output(tmp_path: Path, fake_engine, capsys) -> None:
    from tests.realtime_fakes import probe

    clip = tmp_path / "late.ts"
    clip.write_bytes(ts_segment(clip, 96, 64, 10, start=36_000 * 25))  # a recorder that started 10 h earlier
    out, jsonl, stats = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "s.json"
    code, _, err = polyp_live(["--input", str(clip), "--output", str(out), "--jsonl", str(jsonl),
                               "--stats", str(stats)], capsys)
    assert code == 0, err
    assert [r["time"] for r in read_jsonl(jsonl)] == pytest.approx([i * 0.04 for i in range(10)], abs=1e-6)
    late = (DEFAULT_ON_FRAMES - 1) * 0.04  # the alarm's first frame, counted from the clip's own start
    assert json.loads(stats.read_text())["episodes"][0]["start_time"] == pytest.approx(late)
    assert probe(out)["duration"] == pytest.approx(0.4, abs=0.05)


def test_a_one_pixel_high_input_is_written_and_only_real_outputs_are_claimed(tmp_path: Path, fake_engine,
                                                                             capsys) -> None:
    from tests.fault_helpers import decode_all

    folder = tmp_path / "thin"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((1, 64, 3), 200, np.uint8))
    out = tmp_path / "o.mp4"
    code, text, err = polyp_live(["--input", str(folder), "--output", str(out)], capsys)
    assert code == 0, err
    assert decode_all(out) == 3 and f"wrote        {out}" in text


def test_a_summary_never_names_an_output_that_is_not_there(clip: Path, tmp_path: Path) -> None:
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig
    from polyp_live.realtime.ports import SinkBase

    class VanishingSink(SinkBase):
        name = "vanishing"
        path = tmp_path / "never-written.mp4"

        def write(self, result: Any) -> None:
            pass

        def close(self) -> None:
            pass

    from polyp_live.realtime.sources.files import VideoFileSource

    pipeline = Pipeline(VideoFileSource(clip), BrightSpotEngine(64), PipelineConfig(deliver=False), [VanishingSink()])
    with pipeline:
        assert pipeline.wait(20.0)
    assert pipeline.summary().outputs == ()
