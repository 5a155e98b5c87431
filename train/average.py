"""Uniform weight averaging of checkpoints ("model soup", Wortsman et al. 2022): ``python -m polyp_live.train.average``.

Checkpoints fine-tuned from one another (``polyp-train --init``) stay in one basin of the loss, so the mean of
their weights is itself a model, often better than either on data none of them was selected on. The members
must be the same variant with the same tensors; floating tensors are averaged in float32, integer buffers
(BatchNorm's step counters) are the first member's. The result is an ordinary checkpoint (safetensors + JSON):
its sidecar lists every member (file, SHA-256, training record), keeps the training facts all members share
(ImageNet source, split) and every member's licence text, so ``--init`` from it still names the ImageNet
weights. BatchNorm statistics are averaged with the rest, not re-estimated.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from polyp_live.train.checkpoint import CHECKPOINT_DTYPES, CheckpointInfo, load_model, read_checkpoint, save_checkpoint
from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging
from polyp_live.train.errors import CheckpointError
from polyp_live.train.zoo import resolve_checkpoint

logger = logging.getLogger("polyp_live.average")
PROG = "python -m polyp_live.train.average"

# training-record keys that describe one run, not what the weights saw: never carried over from the members
_PER_RUN_KEYS = frozenset({"command", "epochs_run", "epochs_planned", "best_epoch", "val_dice", "val_iou",
                           "images_per_s", "seed", "init", "source_run", "selection", "bundled_as"})


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of ``states`` of one model (float tensors); integer tensors are the first's."""
    first = states[0]
    return {
        key: (torch.stack([s[key].float() for s in states]).mean(0) if tensor.is_floating_point() else tensor)
        for key, tensor in first.items()
    }


def soup_training(infos: Sequence[CheckpointInfo], command: str) -> dict[str, Any]:
    """The sidecar's training record: the members, and the facts (ImageNet source, split ...) they all share."""
    records = [info.training for info in infos]
    shared = {key: value for key, value in records[0].items()
              if key not in _PER_RUN_KEYS and all(r.get(key) == value for r in records[1:])}
    sources = [_without_via(r.get("pretrained")) for r in records]
    if sources[0] is not None and all(source == sources[0] for source in sources):  # one ImageNet file, any route
        shared["pretrained"] = {**sources[0], "via": "weight average of checkpoints trained from these"}
    members = [{"file": info.weights_path.name, "sha256": info.weights_sha256, "training": info.training}
               for info in infos]
    return {**shared, "command": command, "method": "uniform weight average", "averaged_from": members}


def _without_via(source: object) -> dict[str, Any] | None:
    """An ImageNet source record without its ``via`` (how a run got it: --pretrained, or --init of ...)."""
    return {k: v for k, v in source.items() if k != "via"} if isinstance(source, dict) else None


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, *, size: int | None = None,
                        dtype: str = "float32", command: str = "") -> Path:
    """Average the checkpoints ``paths`` into ``out`` (``NAME`` -> NAME.safetensors + NAME.json)."""
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    infos = [read_checkpoint(resolve_checkpoint(p)) for p in paths]
    variants = sorted({info.variant for info in infos})
    if len(variants) > 1:
        raise CheckpointError(f"the checkpoints are different variants ({', '.join(variants)}); "
                              "only checkpoints of one variant can be averaged")
    licenses = list(dict.fromkeys(info.license for info in infos if info.license))
    if len(licenses) > 1:
        logger.warning("the checkpoints carry %d different licence texts; the average keeps all of them",
                       len(licenses))
    contract = infos[0].contract if size is None else infos[0].contract.with_size(size)
    models = [load_model(info) for info in infos]  # each checked against its variant's tensors and shapes
    model = models[0]
    model.load_state_dict(average_state_dicts([m.state_dict() for m in models]))
    written = save_checkpoint(out, model, contract, training=soup_training(infos, command),
                              license="\n\n".join(licenses) or None, dtype=dtype)
    logger.info("averaged %d checkpoints (%s) into %s at %dx%d", len(infos), ", ".join(map(str, paths)), written,
                contract.height, contract.width)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        PROG,
        "Average the weights of two or more checkpoints of one variant (e.g. fine-tunes of one another, "
        "polyp-train --init) into a new checkpoint; score it with polyp-eval before using it.",
        ["python -m polyp_live.train.average runs/a/best runs/b/best --out runs/soup",
         "python -m polyp_live.train.average default runs/ft/best --out runs/soup --size 256 --dtype float16"],
    )
    p.add_argument("checkpoints", nargs="+", help="checkpoints (NAME, NAME.safetensors, a run folder or 'default')")
    p.add_argument("--out", type=Path, required=True, help="output NAME (writes NAME.safetensors + NAME.json)")
    p.add_argument("--size", type=int,
                   help="input side of the result's contract, a multiple of 32 (default: the first checkpoint's)")
    p.add_argument("--dtype", choices=CHECKPOINT_DTYPES, default="float32",
                   help="storage dtype of the averaged weights")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    command = shlex.join([*PROG.split(), *argv])
    average_checkpoints(args.checkpoints, args.out, size=args.size, dtype=args.dtype, command=command)
    return 0


def entry() -> None:
    sys.exit(run_cli(main, prog=PROG))


if __name__ == "__main__":
    entry()
