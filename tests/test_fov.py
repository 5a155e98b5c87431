"""The endoscope's field of view: made-up tower layouts with known answers, the tracker's stability and re-detection,
the letterbox plan and its way back, and real tower frames (the polyp-free PolypGen frames carry the UI)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from polyp_live.train.contract import ModelContract
from polyp_live.train.fov import (
    CONFIRM_DETECTIONS,
    FieldOfView,
    FieldOfViewTracker,
    detect_field_of_view,
)
from polyp_live.train.preprocess import plan_input, resize_frame, resize_mask_planned, to_frame

TEAL = (40, 190, 150)


def tower_frame(box: tuple[int, int, int, int], size: tuple[int, int] = (720, 1280), seed: int = 0,
                shape: str = "octagon", panel: bool = True, text: bool = True, gain: float = 1.0) -> np.ndarray:
    """A made-up tower frame: black, a textured reddish endoscope picture (octagon or circle) in ``box``
    (x0, y0, x1, y1), white text in the border and a teal panel touching the picture's left side."""
    h, w = size
    rng = np.random.default_rng(seed)
    frame = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    tissue = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    tissue[..., 0] = np.clip(rng.normal(170, 25, tissue.shape[:2]) * gain, 0, 255)
    tissue[..., 1] = np.clip(rng.normal(90, 20, tissue.shape[:2]) * gain, 0, 255)
    tissue[..., 2] = np.clip(rng.normal(80, 20, tissue.shape[:2]) * gain, 0, 255)
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if shape == "circle":
        cv2.circle(inside, ((x1 - x0) // 2, (y1 - y0) // 2), min(x1 - x0, y1 - y0) // 2, 1, -1)
    else:
        c = (x1 - x0) // 6
        pts = np.array([[c, 0], [x1 - x0 - c, 0], [x1 - x0, c], [x1 - x0, y1 - y0 - c], [x1 - x0 - c, y1 - y0],
                        [c, y1 - y0], [0, y1 - y0 - c], [0, c]], np.int32)
        cv2.fillPoly(inside, [pts], 1)
    frame[y0:y1, x0:x1][inside > 0] = tissue[inside > 0]
    if panel and x0 > 200:
        frame[h - 200 : h - 10, x0 - 200 : x0 + 2] = TEAL
    if text and x0 > 200:
        for i in range(6):
            cv2.putText(frame, f"ID 00{i} 12:3{i}", (10, 30 + 25 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        (255, 255, 255), 1)
    return frame


def close(found: FieldOfView | None, box: tuple[int, int, int, int], tol: int) -> bool:
    return found is not None and all(abs(a - b) <= tol for a, b in zip(found.to_list(), box, strict=True))


@pytest.mark.parametrize(("box", "size", "shape"), [
    ((420, 10, 1130, 712), (720, 1280), "octagon"),
    ((620, 20, 1660, 1060), (1080, 1920), "octagon"),
    ((300, 0, 1020, 720), (720, 1280), "circle"),
    ((40, 30, 680, 560), (576, 720), "octagon"),
])
def test_made_up_layouts_give_the_picture_box(box: tuple[int, int, int, int], size: tuple[int, int],
                                               shape: str) -> None:
    frame = tower_frame(box, size, shape=shape)
    found = detect_field_of_view(frame)
    step = max(1, size[1] // 192)
    assert close(found, box, 2 * step + 2), (found, box)
    assert found is not None and all(v % 2 == 0 or v in (size[0], size[1]) for v in found.to_list())


def test_no_border_is_the_whole_frame_and_nothing_is_none() -> None:
    full = tower_frame((0, 0, 640, 480), (480, 640), text=False, panel=False, shape="octagon")
    full[:] = np.maximum(full, 60)  # picture everywhere
    assert detect_field_of_view(full) == FieldOfView(0, 0, 640, 480)
    assert detect_field_of_view(np.zeros((480, 640, 3), np.uint8)) is None
    speck = np.zeros((480, 640, 3), np.uint8)
    speck[200:220, 300:320] = 200  # far below MIN_AREA
    assert detect_field_of_view(speck) is None


def test_the_plan_letterboxes_and_maps_back() -> None:
    contract = ModelContract("lite0", (256, 256), field_of_view=True, keep_aspect=True)
    box = FieldOfView(420, 10, 1130, 712)  # 710 x 702
    plan = plan_input(720, 1280, contract, box)
    assert plan.fov == box and plan.size[0] == 253 and plan.size[1] == 256 and plan.offset == (1, 0)
    frame = tower_frame(box.to_list(), (720, 1280))
    pixels = resize_frame(frame, contract, plan)
    assert pixels.shape == (256, 256, 3) and not pixels[0].any() and pixels[128].any()  # black bars top/bottom
    mask = np.zeros((720, 1280), np.uint8)
    mask[300:420, 600:800] = 1
    small = resize_mask_planned(mask, plan).astype(np.float32)
    back = to_frame(small, plan) >= 0.5
    assert not back[:, :400].any() and not back[:, 1140:].any()  # nothing outside the field of view
    overlap = (back & (mask > 0)).sum() / max(1, (back | (mask > 0)).sum())
    assert overlap > 0.95
    squash = plan_input(720, 1280, ModelContract("lite0", (256, 256)), box)
    assert squash.squashes_whole_frame and squash.fov == FieldOfView.whole(720, 1280)


def test_tracker_is_stable_follows_a_layout_change_and_falls_back_once(caplog: pytest.LogCaptureFixture) -> None:
    tracker = FieldOfViewTracker(name="test")
    first = (420, 10, 1130, 712)
    seen = {tracker.update(tower_frame(first, seed=i)) for i in range(8)}
    assert len(seen) == 1 and close(next(iter(seen)), first, 16)  # noise in the picture: no jitter
    current = tracker.current
    dark = tower_frame(first, seed=99, gain=0.15)  # a dark moment inside the lumen: the box stays
    assert tracker.update(dark) == current
    moved = (60, 40, 700, 680)  # the tower switches layout: adopted after a few frames, not at once
    results = [tracker.update(tower_frame(moved, seed=20 + i, panel=False)) for i in range(CONFIRM_DETECTIONS + 6)]
    assert results[0] == current and close(results[-1], moved, 16) and tracker.changes == 1
    with caplog.at_level(logging.INFO, logger="polyp_live.train.fov"):
        black = np.zeros((720, 1280, 3), np.uint8)
        outs = [tracker.update(black) for _ in range(CONFIRM_DETECTIONS + 12)]
    assert outs[-1] == FieldOfView.whole(720, 1280)
    assert sum("no endoscope field of view" in r.message for r in caplog.records) == 1


def test_real_tower_frames_exclude_borders_and_panels(negatives_dir: Path) -> None:
    """PolypGen tower output: 16:9 frames with the picture beside black borders, text and a teal panel (drawn
    over the picture's lower-left corner on some). The box is near-square, leaves most of the panel out, and the
    frame outside it holds almost no picture."""
    for sequence in sorted(p for p in negatives_dir.iterdir() if p.is_dir()):
        path = sorted(sequence.glob("*.jpg"))[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        found = detect_field_of_view(rgb)
        h, w = rgb.shape[:2]
        assert found is not None, path
        assert 0.75 <= found.width / found.height <= 1.35 or w / h < 1.5, (path, found)
        teal = (rgb[..., 1].astype(int) > rgb[..., 0].astype(int) + 80) & (rgb[..., 1] > 120)
        assert teal[found.y0 : found.y1, found.x0 : found.x1].sum() <= 0.5 * teal.sum() + 50, (path, found)
        outside = rgb.max(axis=2) > 60
        outside[found.y0 : found.y1, found.x0 : found.x1] = False
        assert (outside & ~teal).mean() < 0.03, (path, found)
