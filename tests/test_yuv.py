"""Frames stay in YUV 4:2:0 from decoder to encoder in file mode: the planes, their colours, the model's input made
from them, the overlay drawn into them, and the whole pipeline against its RGB path on the bundled 1080p clip
(same masks to >= 99.9 %, the same look)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from benchmarks.overlay_compare import KeepResults
from polyp_live.realtime.core.overlay import draw_overlay
from polyp_live.realtime.core.pipeline import PipelineConfig, run_to_completion
from polyp_live.realtime.settings import RenderSettings
from polyp_live.realtime.sinks.writers import VideoWriterSink
from polyp_live.realtime.sources.files import VideoFileSource
from polyp_live.realtime.types import Region
from polyp_live.train.contract import ModelContract
from polyp_live.train.preprocess import plan_frame, resize_frame
from polyp_live.train.yuv import Yuv420, rgb_to_yuv, strided_rgb
from tests.conftest import SAMPLE_CLIP


def decoded(count: int = 3) -> list[tuple[np.ndarray, Yuv420]]:
    """Frames of the bundled 1080p clip as FFmpeg gives them in RGB and in 4:2:0."""
    out = []
    with av.open(str(SAMPLE_CLIP)) as container:
        for frame in container.decode(video=0):
            out.append((frame.to_ndarray(format="rgb24"), Yuv420(frame.to_ndarray(format="yuv420p"))))
            if len(out) == count:
                break
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_planes_and_colours_match_ffmpeg() -> None:
    rgb, yuv = decoded(1)[0]
    assert yuv.shape == (1080, 1920) and yuv.u.shape == (540, 960) and yuv.v.shape == (540, 960)
    assert np.shares_memory(yuv.y, yuv.data) and np.shares_memory(yuv.v, yuv.data)
    assert np.abs(yuv.to_rgb().astype(int) - rgb).mean() < 2.0  # BT.601 limited, as FFmpeg's rgb24
    small = strided_rgb(yuv, 10)
    assert small.shape == (108, 192, 3) and np.abs(small.astype(int) - rgb[::10, ::10]).mean() < 3.0
    rebuilt = Yuv420.from_planes(yuv.y, yuv.u, yuv.v)
    assert np.array_equal(rebuilt.data, yuv.data)
    assert rgb_to_yuv((255, 255, 255)) == (235, 128, 128) and rgb_to_yuv((0, 0, 0)) == (16, 128, 128)
    with pytest.raises(ValueError, match="even"):
        Yuv420(np.zeros((9, 5), np.uint8))  # an odd width


def test_model_input_from_planes_is_the_rgb_one() -> None:
    contract = ModelContract("lite0", (256, 256), field_of_view=True, keep_aspect=True)
    for rgb, yuv in decoded(3):
        plan = plan_frame(rgb, contract)
        diff = np.abs(resize_frame(rgb, contract, plan).astype(int) - resize_frame(yuv, contract, plan).astype(int))
        assert diff.mean() < 1.5 and diff.max() <= 6, (diff.mean(), diff.max())


def test_overlay_in_planes_looks_like_the_rgb_overlay() -> None:
    rgb, yuv = decoded(1)[0]
    mask = np.zeros((1080, 1920), np.uint8)
    mask[301:611, 803:1101] = 1  # odd edges: the chroma box rounds outwards
    regions = (Region(803, 301, 1101, 611, 0.05, 0.9),)
    want = draw_overlay(rgb, mask, regions, opacity=0.4, alarm_border=True)
    got = draw_overlay(yuv, mask, regions, opacity=0.4, alarm_border=True)
    assert isinstance(got, Yuv420)
    assert np.array_equal(yuv.data, decoded(1)[0][1].data)  # the frame itself is untouched
    got_rgb = got.to_rgb()
    inside = mask > 0
    assert psnr(got_rgb[inside], want[inside]) > 30 and psnr(got_rgb, want) > 32
    outside = np.ones_like(mask, bool)
    outside[280:632, 780:1124] = False
    outside[:30], outside[-30:], outside[:, :30], outside[:, -30:] = False, False, False, False
    assert np.array_equal(got.data[:1080][outside], yuv.y[outside])  # untouched away from the mask and border


@pytest.mark.slow
def test_file_mode_in_planes_matches_rgb(tmp_path: Path) -> None:
    """The bundled model on the 1080p clip, file mode: planes end to end against RGB end to end."""
    from polyp_live.engines.registry import open_engine

    runs = {}
    with open_engine("default") as engine:
        for yuv in (False, True):
            source = VideoFileSource(SAMPLE_CLIP, yuv=yuv)
            info = source.open()
            keep = KeepResults()
            video = VideoWriterSink(tmp_path / f"{yuv}.mp4", info)
            config = PipelineConfig(live=False, settings=RenderSettings(show_hud=False))  # as polyp-live's file mode
            run_to_completion(source, engine, config, [keep, video])
            source.close()
            runs[yuv] = keep.results
    rgb_run, yuv_run = runs[False], runs[True]
    assert len(rgb_run) == len(yuv_run) == 30
    assert all(isinstance(r.frame.image, Yuv420) and isinstance(r.annotated, Yuv420) for r in yuv_run)
    assert all(isinstance(r.frame.image, np.ndarray) for r in rgb_run)
    masks = [(a.mask, b.mask) for a, b in zip(rgb_run, yuv_run, strict=True)]
    agree = np.mean([np.mean(a == b) for a, b in masks])
    assert agree >= 0.999, agree
    looks = [psnr(a.annotated_rgb, b.annotated_rgb) for a, b in zip(rgb_run, yuv_run, strict=True)]
    assert min(looks) > 30, looks
    with av.open(str(tmp_path / "True.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30
