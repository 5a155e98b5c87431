"""What a container says about its picture is honoured: the display matrix (a phone clip stored sideways), the
pixel aspect ratio (anamorphic), the main video stream (not a 1-frame cover image); a FIFO without a writer
does not hang. Clips are generated here with PyAV; the engine is a fake that finds the bright disc."""

from __future__ import annotations

import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from polyp_live.realtime.errors import SourceError
from polyp_live.realtime.sources.files import VideoFileSource
from tests.fault_helpers import documented_rows, read_jsonl
from tests.realtime_fakes import disc_image, polyp_live, ts_segment

ROWS = {"clip with a 90° display matrix": 0, "anamorphic clip (SAR 2:1)": 0, "cover image before the video": 0,
        "FIFO with no writer": 2, "MP4 with an edit list": 0}


def encode(stream: av.video.stream.VideoStream, container: av.container.OutputContainer, image: np.ndarray) -> None:
    for packet in stream.encode(av.VideoFrame.from_ndarray(image[..., ::-1].copy(), format="rgb24")):
        container.mux(packet)


def make_clip(path: Path, width: int, height: int, frames: int = 6, *, rotation: int | None = None,
              sar: Fraction | None = None, center: tuple[float, float] = (0.75, 0.25)) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation is not None:
            stream.set_display_rotation(rotation)  # counter-clockwise degrees, as FFmpeg's display matrix
        for _ in range(frames):
            encode(stream, container, disc_image(width, height, center))
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def box_center(record: dict) -> tuple[float, float]:
    x0, y0, x1, y1 = record["regions"][0]["box"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def test_a_display_matrix_turns_frames_upright_before_the_model(tmp_path: Path, fake_engine, capsys) -> None:
    """Stored 128x96 with the disc top-right, shown turned 90° counter-clockwise: 96x128, disc top-left."""
    clip = make_clip(tmp_path / "phone.mp4", 128, 96, rotation=90)
    out, jsonl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    code, _, err = polyp_live(["--input", str(clip), "--output", str(out), "--jsonl", str(jsonl)], capsys)
    assert code == 0, err
    records = read_jsonl(jsonl)
    assert len(records) == 6 and all(r["size"] == [96, 128] for r in records)
    x, y = box_center(records[0])  # stored (96, 24) turned counter-clockwise: (24, 127 - 96 = 31)
    assert abs(x - 24) <= 2 and abs(y - 31) <= 2
    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert first.shape == (128, 96, 3)
    ys, xs = np.nonzero(first[..., 1] > 150)
    assert abs(xs.mean() - 24) <= 3 and abs(ys.mean() - 31) <= 3


def test_an_anamorphic_clip_keeps_its_pixel_aspect(tmp_path: Path, fake_engine, capsys) -> None:
    clip = make_clip(tmp_path / "anamorphic.mp4", 64, 96, sar=Fraction(2, 1))
    out = tmp_path / "o.mp4"
    code, _, err = polyp_live(["--input", str(clip), "--output", str(out)], capsys)
    assert code == 0, err
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 96)
        assert stream.sample_aspect_ratio == Fraction(2, 1) and stream.display_aspect_ratio == Fraction(4, 3)


def test_the_main_video_stream_is_read_not_a_cover_image(tmp_path: Path, fake_engine, capsys) -> None:
    """A 1-frame still first (as a thumbnail track), then the 12-frame video: the video is what is annotated."""
    path = tmp_path / "with-cover.mp4"
    with av.open(str(path), "w") as container:
        cover = container.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast"})
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuv420p"
        video = container.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        encode(cover, container, disc_image(32, 32))
        for packet in cover.encode(None):
            container.mux(packet)
        for _ in range(12):
            encode(video, container, disc_image(96, 64))
        for packet in video.encode(None):
            container.mux(packet)
    jsonl = tmp_path / "o.jsonl"
    code, _, err = polyp_live(["--input", str(path), "--jsonl", str(jsonl)], capsys)
    assert code == 0 and "input ended" not in err, err
    records = read_jsonl(jsonl)
    assert len(records) == 12 and all(r["size"] == [96, 64] for r in records)


def test_a_fifo_with_no_writer_times_out(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.ts"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"it is a FIFO and nothing wrote to it within 0\.5 s"):
        VideoFileSource(fifo, open_timeout_s=0.5).open()
    assert time.monotonic() - started < 5.0


def test_a_fifo_with_a_writer_is_read_to_the_end(tmp_path: Path) -> None:
    data = ts_segment(tmp_path / "clip.ts", 96, 64, 15)
    fifo = tmp_path / "feed.ts"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("wb") as handle:
            handle.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with VideoFileSource(fifo, open_timeout_s=5.0) as source:
        frames = 0
        while source.read() is not None:
            frames += 1
    writer.join(5.0)
    assert frames == 15


def test_an_edit_list_is_not_called_truncated(tmp_path: Path, fake_engine, capsys) -> None:
    """25 samples stored, the edit list plays the last 15 (a trimmed clip): 15 frames, no 'truncated' warning."""
    path = tmp_path / "trimmed.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(25):  # pts -10..14: the muxer writes an edit list that starts the clip at pts 0
            frame = av.VideoFrame.from_ndarray(disc_image(96, 64)[..., ::-1].copy(), format="rgb24")
            frame.pts, frame.time_base = i - 10, Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 25  # what the old check compared with
    jsonl = tmp_path / "o.jsonl"
    code, _, err = polyp_live(["--input", str(path), "--jsonl", str(jsonl)], capsys)
    assert code == 0 and "warning" not in err, err
    assert len(read_jsonl(jsonl)) == 15


def test_rows_are_in_the_fault_table() -> None:
    rows = documented_rows()
    assert {name: rows.get(name) for name in ROWS} == {name: str(code) for name, code in ROWS.items()}
