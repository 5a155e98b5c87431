"""``polyp-live --preview FILE.png``: a contact sheet (frames with the mask drawn, timestamps, the polyp
episodes), and the bundled real clip with polyps that ``make demo`` annotates."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest

from polyp_live.realtime import cli
from polyp_live.realtime.sinks.preview import COLUMNS, ROWS, THUMB_WIDTH, PreviewSink, _episode_lines
from polyp_live.realtime.types import Episode
from polyp_live.train.cli_utils import run_cli
from tests.conftest import REPO
from tests.realtime_fakes import BrightSpotEngine, write_disc_video

CVC_SAMPLE = REPO / "samples" / "cvc_clinicdb_seq01-09.mp4"


def fake_result(index: int) -> SimpleNamespace:
    rgb = np.full((90, 120, 3), index % 256, np.uint8)
    return SimpleNamespace(index=index, annotated=rgb, annotated_rgb=rgb, frame=SimpleNamespace(source_ts=index / 25),
                           polyp_present=index % 2 == 0, shows_polyp=index % 2 == 0)


def test_the_sample_is_kept_small_and_spread_over_the_whole_run() -> None:
    sink = PreviewSink("x.png")
    for i in range(5000):  # 200 s at 25 fps
        sink.write(fake_result(i))
        assert len(sink.thumbs) < 4 * sink.cells  # bounded, whatever the run's length
    chosen = sink.chosen()
    assert len(chosen) == COLUMNS * ROWS and chosen[0].index == 0 and chosen[-1].index > 4500
    gaps = np.diff([t.index for t in chosen])
    assert gaps.min() > 0.5 * gaps.mean()  # evenly spread, not bunched at the start
    assert chosen[0].image.shape == (round(90 * THUMB_WIDTH / 120), THUMB_WIDTH, 3)


def test_episode_list_is_capped() -> None:
    episodes = tuple(Episode(10 * i, 10 * i + 3, 0.4 * i, 0.4 * i + 0.12, 4) for i in range(11))
    summary = SimpleNamespace(frames_with_polyp=44, frames_out=120, episodes=episodes, episode_gap_frames=0,
                              polyps=(object(), object()))
    lines = _episode_lines(summary)
    assert lines[0].startswith("POLYP alarm: 11 episode(s), 2 distinct polyp(s); a region in 44 of 120 frames")
    assert lines[1] == "1. 0:00.00 - 0:00.12   frames 0-3   (4 with the alarm on)"
    assert len(lines) == 1 + 8 + 1 and lines[-1].startswith("... and 3 more")


def test_cli_writes_the_sheet_with_masks_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: BrightSpotEngine(64))
    clip = write_disc_video(tmp_path / "in.mp4", 30, height=96, width=128)
    sheet_path = tmp_path / "sheet.png"
    code = run_cli(cli.main, ["--input", str(clip), "--preview", str(sheet_path), "--stats", str(tmp_path / "s.json"),
                              "--no-view"], prog="polyp-live")
    out = capsys.readouterr().out
    assert code == 0 and f"wrote        {sheet_path}" in out
    sheet = cv2.cvtColor(cv2.imread(str(sheet_path)), cv2.COLOR_BGR2RGB)
    assert sheet.shape[1] == COLUMNS * THUMB_WIDTH + (COLUMNS + 1) * 8
    green = np.all(np.abs(sheet.astype(int) - (40, 230, 90)) < 40, axis=-1)
    assert green.sum() > 12 * 50  # every cell shows its mask (the disc) drawn, plus the episode timeline
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_with_polyp"] == 30 and str(sheet_path) in summary["outputs"]


def test_preview_must_be_a_png(tmp_path: Path, capsys) -> None:
    code = run_cli(cli.main, ["--input", str(tmp_path / "x.mp4"), "--preview", str(tmp_path / "s.jpg")],
                   prog="polyp-live")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "give a .png path" in err[0]


def sample_frames() -> tuple[list[np.ndarray], tuple]:
    with av.open(str(CVC_SAMPLE)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, (stream.average_rate, stream.width, stream.height, len(frames))


def test_the_bundled_polyp_clip_is_small_real_size_and_rate() -> None:
    assert CVC_SAMPLE.stat().st_size < 1_000_000
    assert sample_frames()[1] == (25, 384, 288, 199)


def test_the_bundled_polyp_clip_is_cvc_clinicdb_sequences_1_to_9(cvc_dir: Path) -> None:
    frames, _ = sample_frames()
    sources = [path for seq in range(1, 10) for path in sorted((cvc_dir / f"seq{seq:02d}" / "images").iterdir())]
    assert len(sources) == 199
    for i in (0, 25, 198):  # first frames of seq01 and seq02, last of seq09
        original = cv2.cvtColor(cv2.imread(str(sources[i])), cv2.COLOR_BGR2RGB)
        assert cv2.PSNR(original, frames[i]) > 30, i  # the same picture, H.264-encoded once
