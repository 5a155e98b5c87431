"""polyp-eval's scores as the product decides, on made-up cases with known answers and on real frames; the
operating-point choice; near-duplicate groups and the splits by group and by sequence; the mix file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from polyp_live.train.contract import ModelContract
from polyp_live.train.data import Pair
from polyp_live.train.decision import OperatingPoint
from polyp_live.train.errors import DatasetError
from polyp_live.train.evaluation import (
    Candidate,
    FrameScore,
    choose_operating_point,
    score_frame,
    sequence_rows,
    summarize,
    sweep,
)
from polyp_live.train.groups import group_near_duplicates, image_features
from polyp_live.train.make_splits import grouped_split, sequence_split
from polyp_live.train.mix import load_mix
from polyp_live.train.preprocess import plan_input
from tests.conftest import REPO

SQUASH = ModelContract("lite0", (64, 64))


def logits_with(boxes: list[tuple[int, int, int, int]], value: float = 6.0) -> np.ndarray:
    logits = np.full((64, 64), -6.0, np.float32)
    for x0, y0, x1, y1 in boxes:
        logits[y0:y1, x0:x1] = value
    return logits


def test_a_frame_scored_as_the_product_decides() -> None:
    plan = plan_input(128, 128, SQUASH)  # the map is half the frame's size
    truth = np.zeros((128, 128), np.uint8)
    truth[20:60, 20:60] = 1
    point = OperatingPoint(0.5, 0.01, 0.0)  # 1 % of 64x64: 41 map pixels
    hit = score_frame(logits_with([(10, 10, 30, 30), (50, 50, 53, 53)]), truth, plan, point, "s/1", "s", 1)
    assert hit.has_polyp and hit.alarm and hit.hit
    assert hit.dice == pytest.approx(1.0, abs=0.02)  # the 3x3 speck is below min area: not shown, not counted
    assert {(c.threshold, c.hit) for c in hit.candidates if c.threshold == 0.5} == {(0.5, True), (0.5, False)}
    free = score_frame(logits_with([(40, 40, 50, 50)]), np.zeros((128, 128), np.uint8), plan, point)
    assert not free.has_polyp and free.alarm and not free.hit
    assert free.false_area == pytest.approx(20 * 20 / 128**2, rel=0.05)
    quiet = score_frame(logits_with([(40, 40, 45, 45)]), np.zeros((128, 128), np.uint8), plan, point)
    assert not quiet.alarm and quiet.false_area == 0.0  # 25 map pixels < min area


def test_a_letterboxed_frame_is_scored_in_its_own_pixels() -> None:
    """A 400x200 frame letterboxed into 64x64 (content 64x32 at row 16): a region in the content comes back onto the
    frame where the truth is (a wrong mapping -- the content cropped twice -- scored 0.5 here)."""
    letterbox = ModelContract("lite0", (64, 64), keep_aspect=True)
    plan = plan_input(200, 400, letterbox)
    assert plan.size == (32, 64) and plan.offset == (16, 0)
    truth = np.zeros((200, 400), np.uint8)
    truth[50:150, 100:300] = 1  # content rows 8..24, columns 16..48
    scored = score_frame(logits_with([(16, 16 + 8, 48, 16 + 24)]), truth, plan, OperatingPoint(0.5, 0.0, 0.0))
    assert scored.hit and scored.dice == pytest.approx(1.0, abs=0.03)


def frame(seq: str, order: int, has: bool, hit: bool, alarm: bool, dice: float = 0.0) -> FrameScore:
    return FrameScore(f"{seq}/{order}", seq, order, has, dice, dice, alarm, hit, 0.01 if alarm and not has else 0.0)


def test_summaries_known_answers() -> None:
    frames = [frame("a", i, True, i >= 2, i >= 2, 0.8 if i >= 2 else 0.0) for i in range(5)]  # found at frame 2
    frames += [frame("b", i, True, False, False) for i in range(4)]  # never found
    frames += [frame("neg", i, False, False, i == 1) for i in range(10)]  # one false alarm in ten
    s = summarize("set", frames)
    assert (s.frames, s.polyp_frames, s.free_frames) == (19, 9, 10)
    assert s.sensitivity == pytest.approx(3 / 9) and s.missed == 6
    assert s.false_alarm_rate == pytest.approx(0.1) and s.mean_false_area == pytest.approx(0.001)
    assert (s.polyps, s.polyps_found) == (2, 1) and s.first_detection == (2, None)
    assert s.per_polyp_sensitivity == 0.5 and s.median_first_detection == 2.0
    rows = sequence_rows("set", frames)
    assert [r.name for r in rows] == ["set/a", "set/b", "set/neg"]


def test_operating_point_choice_known_answer() -> None:
    polyp = [FrameScore("p", "", 0, True, 0, 0, True, True, 0, (Candidate(0.5, 0.02, 0.9, True),)),
             FrameScore("q", "", 0, True, 0, 0, True, True, 0, (Candidate(0.5, 0.004, 0.7, True),))]
    free = [FrameScore(f"n{i}", "", 0, False, 0, 0, True, False, 0, (Candidate(0.5, 0.003, 0.6, False),))
            for i in range(3)]
    free += [FrameScore(f"m{i}", "", 0, False, 0, 0, False, False, 0) for i in range(97)]
    points = sweep(polyp, free, thresholds=(0.5,), areas=(0.0, 0.0035, 0.01), scores=(0.0, 0.65, 0.8))
    best = choose_operating_point(points, 0.97)
    assert best is not None and best.sensitivity == 1.0 and best.specificity == 1.0
    # the plateau (0, .65), (.0035, 0), (.0035, .65): its middle area, then the middle score there
    assert (best.threshold, best.min_area, best.min_score) == (0.5, 0.0035, 0.65)
    assert choose_operating_point(points, 1.01) is None


def textured(seed: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.integers(0, 255, (400, 520, 3), dtype=np.uint8), (0, 0), 3)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX)
    y, x = 40 + shift[0], 40 + shift[1]
    return np.ascontiguousarray(big[y : y + 300, x : x + 400])


def test_near_duplicates_group_and_splits_keep_groups_whole(tmp_path: Path) -> None:
    images = [textured(0), textured(0, (6, 9)), textured(1), textured(2), textured(2, (-8, 5)), textured(3)]
    groups = group_near_duplicates([image_features(im) for im in images])
    assert groups[0] == groups[1] and groups[3] == groups[4]
    assert len({groups[0], groups[2], groups[3], groups[5]}) == 4
    pairs = [Pair(f"k{i}", Path(__file__), Path(__file__)) for i in range(6)]
    split, multi = grouped_split(pairs, groups, 0.4, seed=1, dataset="t")
    assert sorted(map(sorted, multi)) == [["k0", "k1"], ["k3", "k4"]]
    for group in multi:
        assert len({k in split.val for k in group}) == 1  # never on both sides
    negatives = []  # six sequences from two towers (two frame sizes)
    for s in range(6):
        image = tmp_path / f"s{s}.png"
        cv2.imwrite(str(image), np.zeros((72, 128, 3) if s < 4 else (58, 72, 3), np.uint8))
        negatives += [Pair(f"s{s}/f{i}", image, None) for i in range(3)]
    by_seq, chosen = sequence_split(negatives, 2, seed=0, dataset="neg")
    assert len(chosen) == 2 and {c in ("s4", "s5") for c in chosen} == {True, False}  # each tower its share
    assert all(k.split("/")[0] in chosen for k in by_seq.val)
    assert not {k.split("/")[0] for k in by_seq.train} & set(chosen)


def test_the_committed_mix_and_its_errors(tmp_path: Path) -> None:
    mix = load_mix(REPO / "train" / "splits" / "generalization.json")
    assert [p.name for p in mix.parts] == ["kvasir-seg", "neopolyp-small", "polypgen-negatives"]
    assert [p.name for p in mix.held_out] == ["cvc-clinicdb"] and mix.parts[2].negatives
    assert "cvc-clinicdb" in mix.data_seen() and "non-commercial" in mix.terms()
    fold = load_mix(REPO / "train" / "splits" / "generalization-neopolyp-out.json")  # the second fold
    assert [p.name for p in fold.held_out] == ["neopolyp-small"]
    assert "neopolyp-small" not in [p.name for p in fold.parts] and "cvc-clinicdb" in [p.name for p in fold.parts]
    cvc = fold.part("cvc-clinicdb").load_split()  # by sequence: no sequence on both sides
    assert len(cvc.val) > 0 and not {k.split("/")[0] for k in cvc.train} & {k.split("/")[0] for k in cvc.val}
    ablation = load_mix(REPO / "train" / "splits" / "generalization-neopolyp-out-nonegs.json")
    assert ablation.part("polypgen-negatives").repeat == 0  # validation only: scored, never trained on
    assert "polypgen-negatives: validation only" in ablation.data_seen()
    assert "kvasir-seg: the train ids of" in ablation.data_seen()
    bad = tmp_path / "mix.json"
    part = {"name": "x", "folder": "y", "split": "s.json"}
    bad.write_text(json.dumps({"schema": "polyp-live.mix/1", "parts": [{**part, "repeat": -1}]}))
    with pytest.raises(DatasetError, match=r"0\.\.10"):
        load_mix(bad)
    bad.write_text(json.dumps({"schema": "polyp-live.mix/1", "parts": [{"name": "x", "folder": "y"}]}))
    with pytest.raises(DatasetError, match="no split file"):
        load_mix(bad)
    bad.write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_mix(bad)


@pytest.mark.slow
def test_polyp_eval_on_real_sequences_and_polyp_free_frames(cvc_dir: Path, negatives_dir: Path,
                                                            tmp_path: Path) -> None:
    """The bundled model on two CVC-ClinicDB sequences and two polyp-free tower sequences: one table, per-sequence
    rows, per-polyp sensitivity, the curve, the video metrics and a chosen operating point."""
    from polyp_live.train import cli_eval

    data, neg = tmp_path / "cvc", tmp_path / "neg"
    data.mkdir(), neg.mkdir()
    for seq in ("seq01", "seq05"):
        (data / seq).symlink_to(cvc_dir / seq)
    for seq in ("seq4_neg", "seq12_neg"):
        (neg / seq).symlink_to(negatives_dir / seq)
    out = tmp_path / "eval"
    argv = ["--data", f"cvc={data}", "--negatives", f"free={neg}", "--no-progress", "--json", f"{out}.json",
            "--markdown", f"{out}.md", "--curve", f"{out}.png", "--video", "--choose-operating-point",
            "--min-specificity", "0.9"]
    assert cli_eval.main(argv) == 0
    result = json.loads(Path(f"{out}.json").read_text())
    cvc, free = result["sets"]
    assert cvc["frames"] == 50 and cvc["polyps"] == 2 and cvc["polyp_frames"] == 50 and cvc["free_frames"] == 0
    assert cvc["dice"] > 0.6 and cvc["sensitivity"] > 0.8 and cvc["polyps_found"] == 2
    assert free["free_frames"] == 68 and free["polyp_frames"] == 0 and 0.0 <= free["false_alarm_rate"] <= 1.0
    assert [s["name"] for s in result["sequences"]] == ["cvc/seq01", "cvc/seq05", "free/seq4_neg", "free/seq12_neg"]
    assert result["chosen"] is not None and result["chosen"]["specificity"] >= 0.9
    video = {(v["name"], v["on_frames"]) for v in result["video"]}
    assert ("cvc", 1) in video and ("cvc", 3) in video
    table = Path(f"{out}.md").read_text()
    assert "| cvc | 50 | 50 |" in table and "Video metrics" in table
    curve = cv2.imread(f"{out}.png")
    assert curve is not None and curve.shape == (540, 720, 3)
