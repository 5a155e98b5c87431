"""File mode end to end: real clips (generated ones without the real data) in, every frame out, in order, at
the input's rate, size and duration."""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads, run_to_completion
from polyp_live.realtime.errors import PipelineError
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.sinks.writers import JsonlSink, MaskPngSink, VideoWriterSink
from polyp_live.realtime.sources.files import ImageFolderSource, VideoFileSource
from tests.conftest import SAMPLE_CLIP
from tests.fault_helpers import read_jsonl
from tests.realtime_fakes import BrightSpotEngine, FailingSource, disc_center, probe, write_disc_video


@pytest.mark.parametrize("seq", ["seq01", "seq05"])
def test_cvc_clip_every_frame_out_in_order(cvc_clip: Callable[[str], Path], tmp_path: Path, seq: str) -> None:
    clip = cvc_clip(seq)
    source = VideoFileSource(clip)
    info = source.open()
    engine = BrightSpotEngine(64, max_batch=4, preferred_batch=4)
    sinks = [VideoWriterSink(tmp_path / "out.mp4", info), JsonlSink(tmp_path / "out.jsonl")]
    summary = run_to_completion(source, engine, PipelineConfig(), sinks)

    expected, got = probe(clip), probe(tmp_path / "out.mp4")
    for key in ("frames", "rate", "width", "height", "duration"):
        assert got[key] == pytest.approx(expected[key], abs=1e-3), key
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["index"] for r in records] == list(range(expected["frames"]))
    assert records[1]["time"] == pytest.approx(1 / 25) and records[-1]["time"] == pytest.approx(
        (expected["frames"] - 1) / 25)
    assert summary.frames_in == summary.frames_out == expected["frames"] and summary.frames_dropped == 0
    assert summary.stopped == "end of input" and summary.error is None
    assert max(engine.batch_sizes) == 4  # file mode batches up to the preferred batch
    stages = {item.stage: item for item in summary.latency}
    assert stages["inference"].count == expected["frames"] and stages["end_to_end"].p50_ms > 0
    assert not pipeline_threads()


def test_masks_line_up_with_a_known_disc(tmp_path: Path) -> None:
    clip = write_disc_video(tmp_path / "disc.mp4", 12, height=96, width=128)
    source = VideoFileSource(clip)
    source.open()
    sinks = [MaskPngSink(tmp_path / "masks"), JsonlSink(tmp_path / "r.jsonl")]
    run_to_completion(source, BrightSpotEngine(64), PipelineConfig(batch=3), sinks)
    pngs = sorted((tmp_path / "masks").glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:06d}.png" for i in range(12)]
    for i, png in enumerate(pngs):
        mask = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (96, 128) and set(np.unique(mask)) <= {0, 255}
        ys, xs = np.nonzero(mask)
        cx, cy = disc_center(i, 96, 128)
        assert abs(xs.mean() - cx) <= 2 and abs(ys.mean() - cy) <= 2
        assert abs(len(xs) - np.pi * 16**2) < 0.25 * np.pi * 16**2  # disc radius 96 // 6
    records = read_jsonl(tmp_path / "r.jsonl")
    for i, record in enumerate(records):
        x0, _, x1, _ = record["regions"][0]["box"]
        assert abs((x0 + x1) / 2 - disc_center(i, 96, 128)[0]) <= 3


def test_image_folder_at_fps(frame_folder: Callable[[str], Path], tmp_path: Path) -> None:
    images = frame_folder("seq02")
    count = len(list(images.iterdir()))
    source = ImageFolderSource(images, fps=10)
    info = source.open()
    summary = run_to_completion(source, BrightSpotEngine(64), PipelineConfig(),
                                [VideoWriterSink(tmp_path / "o.mp4", info)])
    got = probe(tmp_path / "o.mp4")
    assert summary.frames_out == count == got["frames"]
    assert got["rate"] == 10 and got["duration"] == pytest.approx(count / 10, abs=1e-3)


def test_1080p_sample_first_frames(tmp_path: Path) -> None:
    if not SAMPLE_CLIP.exists():
        pytest.skip(f"sample clip missing: {SAMPLE_CLIP}")
    source = VideoFileSource(SAMPLE_CLIP)
    info = source.open()
    summary = run_to_completion(source, BrightSpotEngine(64), PipelineConfig(max_frames=4),
                                [VideoWriterSink(tmp_path / "o.mp4", info)])
    got = probe(tmp_path / "o.mp4")
    assert (got["width"], got["height"], got["rate"], got["frames"]) == (1920, 1080, 30, 4)
    assert got["duration"] == pytest.approx(4 / 30, abs=1e-3) and summary.stopped == "max frames"


def test_iterating_results_and_breaking_early_shuts_down(cvc_clip: Callable[[str], Path]) -> None:
    source = VideoFileSource(cvc_clip("seq03"))
    indices = []
    with Pipeline(source, BrightSpotEngine(64), PipelineConfig(batch=2)) as run:
        for result in run:
            assert result.annotated.shape == result.frame.rgb.shape
            indices.append(result.index)
            if len(indices) == 5:
                break
    assert indices == [0, 1, 2, 3, 4]
    assert not pipeline_threads()
    assert run.summary().stopped in ("stopped", "end of input", "max frames")


def test_opencv_runs_on_one_thread_while_pipelines_run(cvc_clip: Callable[[str], Path]) -> None:
    """Stages run in parallel, so OpenCV's pool is one thread while any pipeline runs (two overlapping ones
    here) and OpenCV's own setting comes back after the last one closes."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        seen = []
        with Pipeline(VideoFileSource(cvc_clip("seq03")), BrightSpotEngine(64), PipelineConfig(max_frames=3)) as a:
            with Pipeline(VideoFileSource(cvc_clip("seq05")), BrightSpotEngine(64), PipelineConfig(max_frames=3)) as b:
                seen += [cv2.getNumThreads() for _ in b]
            seen += [cv2.getNumThreads() for _ in a]
        assert seen == [1] * 6
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize("failure", ["source", "engine"])
def test_mid_stream_failure_keeps_what_was_processed(cvc_clip: Callable[[str], Path], tmp_path: Path,
                                                      failure: str) -> None:
    clip = cvc_clip("seq04")
    inner = VideoFileSource(clip)
    info = inner.open()
    source = FailingSource(inner, 9) if failure == "source" else inner
    engine = BrightSpotEngine(64, fail_after=3 if failure == "engine" else None)
    sinks = [VideoWriterSink(tmp_path / "o.mp4", info), JsonlSink(tmp_path / "o.jsonl")]
    with pytest.raises(PipelineError) as caught:
        run_to_completion(source, engine, PipelineConfig(batch=2), sinks)
    summary = caught.value.summary
    assert summary is not None and summary.stopped == "error"
    assert ("simulated read failure" if failure == "source" else "fake engine failure") in str(caught.value)
    expected = 9 if failure == "source" else 6  # 3 batches of 2 before the engine fails
    got = probe(tmp_path / "o.mp4")
    records = read_jsonl(tmp_path / "o.jsonl")
    assert got["frames"] == len(records) == summary.frames_out == expected
    assert got["duration"] == pytest.approx(expected / 25, abs=1e-3)
    assert [r["index"] for r in records] == list(range(expected))
    assert not pipeline_threads()
    assert not [t for t in threading.enumerate() if t.name.startswith("polyp-live")]


def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path) -> None:
    import av

    from tests.realtime_fakes import disc_frame

    clip = tmp_path / "vfr.mp4"
    stamps_ms = [0, 40, 80, 200, 240, 400, 433, 466, 700]  # irregular gaps, as from a screen recorder
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, ms in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(disc_frame(96, 128, (20 + 10 * i, 48), 12), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    def timestamps_ms(path: Path) -> list[int]:
        with av.open(str(path)) as container:
            return [round(float(f.pts * f.time_base) * 1000) for f in container.decode(container.streams.video[0])]

    in_ms = timestamps_ms(clip)
    assert len(in_ms) == len(stamps_ms) and len(set(np.diff(in_ms))) > 2  # really variable
    source = VideoFileSource(clip)
    info = source.open()
    sinks = [VideoWriterSink(tmp_path / "o.mp4", info), JsonlSink(tmp_path / "o.jsonl")]
    run_to_completion(source, BrightSpotEngine(64), PipelineConfig(), sinks)
    assert [round(r["time"] * 1000) for r in read_jsonl(tmp_path / "o.jsonl")] == in_ms
    assert timestamps_ms(tmp_path / "o.mp4") == in_ms


class _StopOnCloseSink(SinkBase):
    """Calls ``pipeline.stop()`` when the run closes it -- what the viewer does when the file ends."""

    name = "stop-on-close"

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.written = 0

    def write(self, result: object) -> None:
        self.written += 1

    def close(self) -> None:
        assert self.pipeline is not None
        self.pipeline.stop()


def test_stop_after_the_input_ended_is_not_a_user_stop(tmp_path: Path) -> None:
    # The viewer closes its window on the output stage's "finished" signal, which is emitted from the
    # sinks' close() -- before Pipeline.finished is set. That stop must not turn "end of input" into "stopped".
    clip = write_disc_video(tmp_path / "in.mp4", 10)
    sink = _StopOnCloseSink()
    pipeline = Pipeline(VideoFileSource(clip), BrightSpotEngine(64), PipelineConfig(deliver=False), [sink])
    sink.pipeline = pipeline
    with pipeline:
        assert pipeline.wait(30)
    summary = pipeline.summary()
    assert sink.written == summary.frames_out == 10
    assert summary.stopped == "end of input" and not pipeline.stop_requested


def test_stop_before_the_input_ended_is_a_user_stop(tmp_path: Path) -> None:
    clip = write_disc_video(tmp_path / "in.mp4", 40)
    pipeline = Pipeline(VideoFileSource(clip), BrightSpotEngine(64), PipelineConfig(deliver=False))
    pipeline.pause()
    with pipeline:
        pipeline.stop()
        assert pipeline.wait(30)
    summary = pipeline.summary()
    assert summary.stopped == "stopped" and summary.frames_out < 40 and pipeline.stop_requested


def test_the_pipeline_decides_its_mode_once_and_takes_sinks_only_before_start(tmp_path: Path) -> None:
    from polyp_live.realtime.types import RunMode

    clip = write_disc_video(tmp_path / "in.mp4", 6)
    source = VideoFileSource(clip)
    pipeline = Pipeline(source, BrightSpotEngine(64), PipelineConfig(deliver=False))
    assert pipeline.mode is RunMode.FILE and source.opened  # resolved (source opened) before start
    forced = Pipeline(VideoFileSource(clip), BrightSpotEngine(64), PipelineConfig(live=True, deliver=False))
    assert forced.mode is RunMode.LIVE
    forced.source.close()
    sink = _StopOnCloseSink()
    sink.pipeline = pipeline
    pipeline.add_sinks(sink)
    with pipeline:
        with pytest.raises(PipelineError, match="before the pipeline starts"):
            pipeline.add_sinks(_StopOnCloseSink())
        assert pipeline.wait(30)
    assert sink.written == pipeline.summary().frames_out == 6
