"""Every command explains itself: ``--help`` shows the defaults and 2-4 examples, each of them a command line
that the command's own parser accepts; no reStructuredText ``markup`` leaks into the help."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

import pytest

from polyp_live.calibration.cli import build_parser as calibrate_parser
from polyp_live.engines.cli_export import build_parser as export_parser
from polyp_live.realtime.batch.cli import build_parser as batch_parser
from polyp_live.realtime.cli import build_parser as live_parser
from polyp_live.train.checkpoint import read_checkpoint
from polyp_live.train.cli_eval import build_parser as eval_parser
from polyp_live.train.cli_train import build_parser as train_parser
from polyp_live.train.zoo import resolve_bundled

COMMANDS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "polyp-live": live_parser, "polyp-train": train_parser, "polyp-eval": eval_parser,
    "polyp-export": export_parser, "polyp-calibrate": calibrate_parser, "polyp-batch": batch_parser,
}
# an option with a default that each command's help must show
SHOWN_DEFAULTS = {"polyp-live": "mask fill opacity 0..1 (default: 0.4)",
                  "polyp-train": "(default: lite0)", "polyp-eval": "(default: default)",
                  "polyp-export": "(default: fp16)", "polyp-calibrate": "(default: default)",
                  "polyp-batch": "CPU threads of each worker (default: 1)"}


def help_text(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        COMMANDS[name]().parse_args(["--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_defaults_and_examples_that_parse(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(name, capsys)
    assert "``" not in text
    assert SHOWN_DEFAULTS[name] in " ".join(text.split())  # argparse wraps lines
    examples = [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]
    assert 2 <= len(examples) <= 4 and all(line.startswith(name + " ") for line in examples), examples
    for line in examples:
        argv = shlex.split(line, comments=True)[1:]
        COMMANDS[name]().parse_args(argv)  # argparse exits (code 2) on an example it does not accept


def test_help_of_train_says_the_defaults_suit_a_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    """polyp-train's defaults are the bundled model's variant and input size, and its help says so."""
    bundled = read_checkpoint(resolve_bundled("default"))
    side = bundled.contract.height
    text = " ".join(help_text("polyp-train", capsys).split())
    assert f"PEFNet-{bundled.variant} at {side}" in text and "suit a CPU" in text and f"(default: {side})" in text
    args = train_parser().parse_args(["--data", "d"])
    assert (args.variant, args.size) == (bundled.variant, side) and bundled.contract.width == side


def test_the_bundled_model_is_every_command_s_default() -> None:
    assert live_parser().parse_args(["--input", "x.mp4"]).engine == "default"
    assert eval_parser().parse_args(["--data", "d"]).checkpoint == "default"
    assert calibrate_parser().parse_args(["--images", "f", "--out", "o.onnx"]).checkpoint == "default"
