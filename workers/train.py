"""One training run from a plain parameter dict: the objective every trial and retrain calls.

``train(params, epochs=..., device=...)`` builds the model (workers/models.py), trains it on
the training split, evaluates the validation split after every epoch (the curve), keeps the best
weights by validation accuracy, and only when ``evaluate_test=True`` (the final retrain) reports
test accuracy of those best weights.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import torch
from torch import nn

from search_spaces.params import Params, resolve
from trials.records import Point, RunReport
from workers.data import Split, Splits, load_dataset
from workers.models import ModelArgs, build_model, model_args

__all__ = ["TrainResult", "train", "get_data", "load_checkpoint", "evaluate", "pick_device",
           "resolve"]

EVAL_BATCH = 1000


@dataclass
class TrainResult:
    status: str  # "ok" | "diverged" | "stopped"
    seed: int
    epochs_run: int
    best_val_acc: float
    best_epoch: int  # 0 when no epoch finished
    curve: list[Point] = field(default_factory=list)
    test_acc: float | None = None
    test_loss: float | None = None
    n_params: int = 0
    seconds: float = 0.0
    reason: str | None = None  # why it diverged
    resumed_from: int = 0  # the epoch of the snapshot this run continued from (0: a fresh start)

    def report(self) -> RunReport:
        """The job's result as the worker reports it (the curve is stored on its own)."""
        out = asdict(self)
        del out["curve"]
        return cast(RunReport, out)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is the first visible GPU (CUDA_VISIBLE_DEVICES decides which) or else CPU."""
    if str(device) == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device} requested but CUDA is not available")
    return dev


_DATA_CACHE: dict[tuple[str, str], Splits] = {}


def get_data(name: str, device: torch.device, data_dir: str | None = None) -> Splits:
    """Dataset ``name`` on ``device``, loaded once per process and reused by later trials.
    Only the device copy is kept (on a GPU the CPU copy it was made from is dropped)."""
    key = (name, str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir).to(device)
    return _DATA_CACHE[key]


@torch.no_grad()
def evaluate(model: nn.Module, split: Split) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(split), EVAL_BATCH):
        xb, yb = split.x[i : i + EVAL_BATCH], split.y[i : i + EVAL_BATCH]
        logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    n = max(len(split), 1)
    return loss_sum / n, correct / n


def _optimizer(model: nn.Module, p: Mapping[str, Any]) -> torch.optim.Optimizer:
    if p["optimizer"] == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"]
        )
    return torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])


def save_checkpoint(path: Path, state_dict: dict, args: dict, params: dict, epoch: int, acc: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    payload = {"format": 1, "model_args": args, "params": params, "epoch": epoch,
               "val_acc": acc, "state_dict": state}
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a file


def load_checkpoint(path: str | Path | BinaryIO, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint (a path or a file object) describes. Loads tensors and
    plain data only."""
    payload = torch.load(path, map_location=device, weights_only=True)
    model = build_model(payload["model_args"]).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


@dataclass
class _Run:
    """One run's state: the model, its optimizer, the shuffling generator, the curve so far and
    the best weights. ``train`` drives it epoch by epoch."""

    p: Params  # the trial's parameters, resolved (search_spaces/params.py)
    args: ModelArgs
    splits: Splits
    model: nn.Module
    opt: torch.optim.Optimizer
    shuffle: torch.Generator
    result: TrainResult
    ckpt: Path | None
    keep_best: bool
    best_state: dict | None = None

    @classmethod
    def start(cls, params: Mapping[str, Any], dev: torch.device, data: Splits | None,
              ckpt: Path | None, keep_best: bool) -> _Run:
        p = resolve(params)
        splits = data.to(dev) if data is not None else get_data(p["dataset"], dev)
        args = model_args(p, splits.input_size, splits.n_classes)
        torch.manual_seed(p["seed"])  # same params + seed => same initial weights and dropout masks
        model = build_model(args).to(dev)
        n_params = sum(x.numel() for x in model.parameters())
        return cls(p, args, splits, model, _optimizer(model, p),
                   torch.Generator().manual_seed(p["seed"]),
                   TrainResult("ok", p["seed"], 0, 0.0, 0, n_params=n_params), ckpt, keep_best)

    def diverged(self, why: str) -> None:
        self.result.status, self.result.reason = "diverged", why

    def train_epoch(self, epoch: int, on_step: Callable[[], None] | None) -> float | None:
        """One pass over the training split in this epoch's order: the mean training loss, or
        None when the loss diverged (``result`` says where)."""
        x, y, bs = self.splits.train.x, self.splits.train.y, self.p["batch_size"]
        self.model.train()
        loss_sum, seen = 0.0, 0
        order = torch.randperm(len(y), generator=self.shuffle).to(x.device)
        for i in range(0, len(y), bs):
            idx = order[i : i + bs]
            loss = nn.functional.cross_entropy(self.model(x[idx]), y[idx])
            value = float(loss.detach())
            if not math.isfinite(value) or value > self.p["diverge_loss"]:
                self.diverged(f"loss {value:.4g} at epoch {epoch}, batch {i // bs}")
                return None
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.p["clip_norm"] > 0:  # after backward, before the step
                nn.utils.clip_grad_norm_(self.model.parameters(), self.p["clip_norm"])
            self.opt.step()
            if on_step is not None:
                on_step()
            loss_sum += value * len(idx)
            seen += len(idx)
        return loss_sum / max(seen, 1)

    def epoch(self, epoch: int, on_step: Callable[[], None] | None) -> Point | None:
        """Train one epoch and validate: its point, recorded; None when it diverged."""
        t0, lr = time.perf_counter(), self.opt.param_groups[0]["lr"]
        train_loss = self.train_epoch(epoch, on_step)
        if train_loss is None:
            return None
        val_loss, val_acc = evaluate(self.model, self.splits.val)
        if on_step is not None:
            on_step()
        if not math.isfinite(val_loss):
            self.diverged(f"validation loss {val_loss} at epoch {epoch}")
            return None
        point: Point = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "val_acc": val_acc, "lr": lr, "seconds": time.perf_counter() - t0}
        self.record(point)
        return point

    def record(self, point: Point) -> None:
        """Append an epoch's point; keep (and checkpoint) the weights when it is the best."""
        r, epoch, val_acc = self.result, int(point["epoch"]), point["val_acc"]
        r.curve.append(point)
        r.epochs_run = epoch
        if val_acc > r.best_val_acc or r.best_epoch == 0:
            r.best_val_acc, r.best_epoch = val_acc, epoch
            if self.keep_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
            if self.ckpt is not None:
                self.save_checkpoint(self.model.state_dict(), epoch, val_acc)
        for g in self.opt.param_groups:
            g["lr"] *= self.p["lr_decay"]

    def save_checkpoint(self, state_dict: dict, epoch: int, acc: float) -> None:
        assert self.ckpt is not None
        save_checkpoint(self.ckpt, state_dict, self.args, self.p, epoch, acc)

    def snapshot(self, epoch: int) -> bytes:
        buf = io.BytesIO()
        torch.save({
            "format": 1, "epoch": epoch, "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(), "rng": torch.get_rng_state(),
            "shuffle": self.shuffle.get_state(), "curve": self.result.curve,
            "best_val_acc": self.result.best_val_acc, "best_epoch": self.result.best_epoch,
            "best_state": self.best_state,
        }, buf)
        return buf.getvalue()

    def restore(self, data: bytes, dev: torch.device) -> int:
        """Load a snapshot (tensors and plain data only); returns the next epoch."""
        s = torch.load(io.BytesIO(data), map_location=dev, weights_only=True)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        torch.set_rng_state(s["rng"].cpu())
        self.shuffle.set_state(s["shuffle"].cpu())
        r = self.result
        r.curve = list(s["curve"])
        r.best_val_acc, r.best_epoch = s["best_val_acc"], s["best_epoch"]
        r.epochs_run = r.resumed_from = int(s["epoch"])
        self.best_state = s["best_state"]
        if self.ckpt is not None and self.best_state is not None:
            self.save_checkpoint(self.best_state, r.best_epoch, r.best_val_acc)
        return int(s["epoch"]) + 1


def train(
    params: Mapping[str, Any],
    *,
    epochs: int,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    on_epoch: Callable[[Point], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    evaluate_test: bool = False,
    data: Splits | None = None,
    resume: bytes | None = None,
    on_snapshot: Callable[[bytes, int], None] | None = None,
    snapshot_every: float = 60.0,
    on_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Train ``params`` for ``epochs`` epochs; see the module docstring.

    ``on_snapshot(bytes, epoch)`` receives the whole training state (weights, optimizer, RNGs, curve,
    best weights) after an epoch when ``snapshot_every`` seconds have passed since the last one,
    and when ``should_stop`` ends the run; ``resume=`` those bytes continues from that epoch
    exactly as if the run had not been interrupted (same curve on CPU). ``on_step()`` is called
    after every optimizer step and every validation pass (the trainer's progress counter).
    """
    if epochs < 1:
        raise ValueError(f"epochs: must be >= 1, got {epochs}")
    t_start = time.perf_counter()
    dev = pick_device(device)
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    run = _Run.start(params, dev, data, ckpt,
                     keep_best=evaluate_test or ckpt is not None or on_snapshot is not None)
    result = run.result
    first = run.restore(resume, dev) if resume is not None else 1
    last_snapshot = time.monotonic()
    for epoch in range(first, epochs + 1):
        point = run.epoch(epoch, on_step)
        if point is None:
            break
        if on_epoch is not None:
            on_epoch(point)
        stopping = epoch < epochs and should_stop is not None and should_stop()
        if stopping:
            result.status = "stopped"
        if on_snapshot is not None and epoch < epochs and (
                stopping or time.monotonic() - last_snapshot >= snapshot_every):
            on_snapshot(run.snapshot(epoch), epoch)
            last_snapshot = time.monotonic()
        if stopping:
            break

    if evaluate_test and run.best_state is not None:
        run.model.load_state_dict(run.best_state)
        result.test_loss, result.test_acc = evaluate(run.model, run.splits.test)
    result.seconds = time.perf_counter() - t_start
    return result
