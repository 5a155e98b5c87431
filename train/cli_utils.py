"""What every console script shares: logging set-up and one-line error reporting.

``run_cli(main)`` calls ``main()``; a :class:`~polyp_live.train.errors.PolypLiveError`, a missing file or a
permission problem becomes one line ``polyp-xxx: error: ...`` on stderr and exit code 2
(KeyboardInterrupt: 130). ``--debug`` anywhere on the command line (or ``POLYP_LIVE_DEBUG=1``)
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from polyp_live.train.errors import PolypLiveError

N = TypeVar("N", int, float)

logger = logging.getLogger("polyp_live")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help states it, or there is none), examples kept as laid out."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or hidden or not action.option_strings:
            return text
        return super()._get_help_string(action)


def number_arg(convert: Callable[[str], N], accept: Callable[[N], bool], wanted: str,
               name: str) -> Callable[[str], N]:
    """An argparse ``type``: ``convert(text)`` that ``accept`` allows, else "expected WANTED, got 'text'"
    (``accept`` sees the converted value; write it so that ``nan`` fails)."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


def make_parser(prog: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of a console script: defaults shown, and ``examples`` (whole command lines, each one a valid
    invocation: ``tests/test_cli_help.py`` parses them) in the epilog."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return argparse.ArgumentParser(prog=prog, description=textwrap.fill(description, 100), epilog=epilog,
                                   formatter_class=HelpFormatter)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def debug_requested(argv: list[str] | None = None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("POLYP_LIVE_DEBUG") == "1"


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_cli(
    main: Callable[[list[str] | None], int | None], argv: list[str] | None = None, prog: str | None = None
) -> int:
    """Run a command's ``main(argv)``; return its exit code, turning known errors into one line."""
    name = prog or Path(sys.argv[0]).name
    try:
        return int(main(argv) or 0)
    except PolypLiveError as exc:
        if debug_requested(argv):
            raise
        _say(f"{name}: error: {exc}")
        return exc.exit_code
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug_requested(argv):
            raise
        _say(f"{name}: error: {exc.strerror or exc}: {exc.filename}")
        return 2
    except KeyboardInterrupt:
        _say(f"{name}: interrupted")
        return 130
