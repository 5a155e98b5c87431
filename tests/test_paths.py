"""One path resolver for every input and output: local names are local files (never FFmpeg protocols), outputs
never overwrite an input or each other. Inputs are small H.264 clips generated here; the engine is a fake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polyp_live.train.media_paths import UnsupportedUrl, locate
from tests.fault_helpers import check_message, decode_all, documented_rows, read_jsonl
from tests.realtime_fakes import polyp_live, write_disc_video

FRAMES = 12
ROWS = {  # the rows of the fault table (docs/reliability.md) these tests cover, with their exit codes
    "output named `file:x.mp4` or `a:b.mp4`": 0, "unsupported URL scheme": 2, "two outputs name one file": 2,
    "output container not MP4": 2, "output is a URL": 2,
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run's current folder holds the input ``victim.mp4``."""
    monkeypatch.chdir(tmp_path)
    write_disc_video(tmp_path / "victim.mp4", FRAMES, faststart=True)
    return tmp_path


# --------------------------------------------------------------------------- the resolver
@pytest.mark.parametrize(("text", "url", "live"), [
    ("rtsp://cam/stream", True, True), ("udp://@:1234", True, True), ("rtp://239.0.0.1:5004", True, True),
    ("SRT://host:9000", True, True), ("https://host/case.mp4", True, False),
    ("file:case.mp4", False, False), ("colon:file.mp4", False, False), ("concat:a.mp4|b.mp4", False, False),
    ("pipe:1", False, False), ("./sub/../case.mp4", False, False),
])
def test_only_supported_url_schemes_are_urls(text: str, url: bool, live: bool) -> None:
    location = locate(text)
    assert (location.url, location.live) == (url, live)
    if url:
        assert location.ffmpeg == text
    else:  # FFmpeg gets the absolute path behind 'file:', so it never parses a protocol out of the name
        assert location.path == Path(os.getcwd(), text) and location.ffmpeg == f"file:{Path(os.getcwd(), text)}"


def test_an_unknown_scheme_is_refused_not_guessed(tmp_path: Path, fake_engine, capsys) -> None:
    with pytest.raises(UnsupportedUrl, match="unsupported URL scheme 'ftp://'"):
        locate("ftp://host/case.mp4")
    code, _, err = polyp_live(["--input", "ftp://host/case.mp4", "--jsonl", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, "unsupported URL scheme 'ftp://'")
    assert not (tmp_path / "o.jsonl").exists()


# --------------------------------------------------------------------------- data loss through protocols
def test_file_prefix_output_is_a_new_file_not_the_input(workdir: Path, fake_engine, capsys) -> None:
    """``--output file:victim.mp4`` used to be FFmpeg's file protocol for victim.mp4: the input was overwritten
    while it was read. Now it is the local file named ``file:victim.mp4``."""
    before = (workdir / "victim.mp4").read_bytes()
    code, _, err = polyp_live(["--input", "victim.mp4", "--output", "file:victim.mp4", "--jsonl", "o.jsonl"], capsys)
    assert code == 0, err
    assert (workdir / "victim.mp4").read_bytes() == before
    assert decode_all(workdir / "file:victim.mp4") == len(read_jsonl(workdir / "o.jsonl")) == FRAMES


def test_colon_names_are_read_and_written(workdir: Path, fake_engine, capsys) -> None:
    (workdir / "victim.mp4").rename(workdir / "colon:file.mp4")
    code, _, err = polyp_live(["--input", "colon:file.mp4", "--output", "colon:out.mp4"], capsys)
    assert code == 0, err
    assert decode_all(workdir / "colon:out.mp4") == FRAMES


def test_file_prefix_input_names_its_own_file(workdir: Path, fake_engine, capsys) -> None:
    """``--input file:victim.mp4`` is a file of that name (absent here), not victim.mp4 through a protocol."""
    code, _, err = polyp_live(["--input", "file:victim.mp4", "--jsonl", "o.jsonl"], capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, "input not found: file:victim.mp4")


def test_calibration_reads_a_colon_name_as_a_local_file(workdir: Path) -> None:
    from polyp_live.calibration.frames import frames_from_video
    from polyp_live.train.contract import ModelContract

    (workdir / "victim.mp4").rename(workdir / "colon:file.mp4")
    frames = frames_from_video("colon:file.mp4", 4, ModelContract("atto", (64, 64)))
    assert 1 <= len(frames.frames) <= 4


# --------------------------------------------------------------------------- outputs that collide
def _collisions(folder: Path) -> dict[str, tuple[list[str], str]]:
    (folder / "masks").mkdir()
    (folder / "real.jsonl").write_text("")
    (folder / "alias.jsonl").symlink_to(folder / "real.jsonl")
    return {
        "output = jsonl": (["--output", "x.mp4", "--jsonl", "x.mp4"], "--output x.mp4 and --jsonl x.mp4"),
        "jsonl = stats": (["--jsonl", "x", "--stats", "x"], "--jsonl x and --stats x name the same file"),
        "jsonl = stats, other spelling": (["--jsonl", "x.json", "--stats", "./sub/../x.json"], "name the same file"),
        "jsonl = stats through a symlink": (["--jsonl", "real.jsonl", "--stats", "alias.jsonl"],
                                            "name the same file"),
        "stats = masks folder": (["--masks", "masks", "--stats", "masks"], "collides with the mask PNGs"),
        "jsonl = a mask PNG": (["--masks", "masks", "--jsonl", "masks/frame_000003.png"],
                               "collides with the mask PNGs"),
    }


CASES = ["output = jsonl", "jsonl = stats", "jsonl = stats, other spelling", "jsonl = stats through a symlink",
         "stats = masks folder", "jsonl = a mask PNG"]


@pytest.mark.parametrize("case", CASES)
def test_outputs_that_name_the_same_file_are_refused(case: str, workdir: Path, fake_engine, capsys) -> None:
    (workdir / "sub").mkdir()
    flags, message = _collisions(workdir)[case]
    before = sorted(p.name for p in workdir.rglob("*"))
    code, _, err = polyp_live(["--input", "victim.mp4", *flags], capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, message)
    assert sorted(p.name for p in workdir.rglob("*")) == before  # nothing created, the masks folder untouched


def test_a_jsonl_beside_the_masks_is_fine(workdir: Path, fake_engine, capsys) -> None:
    code, _, err = polyp_live(["--input", "victim.mp4", "--masks", "run", "--jsonl", "run/o.jsonl"], capsys)
    assert code == 0, err
    assert len(list((workdir / "run").glob("frame_*.png"))) == len(read_jsonl(workdir / "run" / "o.jsonl")) == FRAMES


@pytest.mark.parametrize("name", ["o.webm", "o.mkv", "o.avi"])
def test_other_video_containers_are_refused_up_front(name: str, workdir: Path, fake_engine, capsys) -> None:
    code, _, err = polyp_live(["--input", "victim.mp4", "--output", name, "--jsonl", "o.jsonl"], capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, "give a .mp4 name")
    assert not (workdir / name).exists() and not (workdir / "o.jsonl").exists()


def test_an_output_url_is_refused(workdir: Path, fake_engine, capsys) -> None:
    code, _, err = polyp_live(["--input", "victim.mp4", "--output", "rtmp://host/live.mp4"], capsys)
    assert code == 2 and fake_engine == []
    check_message(err, code, "outputs are local files, not URLs")


def test_rows_are_in_the_fault_table() -> None:
    rows = documented_rows()
    assert {name: rows.get(name) for name in ROWS} == {name: str(code) for name, code in ROWS.items()}
