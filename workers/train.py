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
from typing import Any, BinaryIO

import torch
from torch import nn

from search_spaces.params import resolve
from workers.data import Split, Splits, load_dataset
from workers.models import build_model, model_args

__all__ = ["TrainResult", "train", "get_data", "load_checkpoint", "evaluate", "pick_device",
           "resolve"]

EVAL_BATCH = 1000

Point = dict[str, float]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _snapshot(epoch: int, model: nn.Module, opt: torch.optim.Optimizer, shuffle: torch.Generator,
              result: TrainResult, best_state: dict | None) -> bytes:
    buf = io.BytesIO()
    torch.save({
        "format": 1, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(), "shuffle": shuffle.get_state(), "curve": result.curve,
        "best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch,
        "best_state": best_state,
    }, buf)
    return buf.getvalue()


def _restore(data: bytes, dev: torch.device, model: nn.Module, opt: torch.optim.Optimizer,
             shuffle: torch.Generator, result: TrainResult) -> tuple[dict | None, int]:
    """Load a snapshot (tensors and plain data only); returns (best weights, next epoch)."""
    s = torch.load(io.BytesIO(data), map_location=dev, weights_only=True)
    model.load_state_dict(s["model"])
    opt.load_state_dict(s["optimizer"])
    torch.set_rng_state(s["rng"].cpu())
    shuffle.set_state(s["shuffle"].cpu())
    result.curve = list(s["curve"])
    result.best_val_acc, result.best_epoch = s["best_val_acc"], s["best_epoch"]
    result.epochs_run = result.resumed_from = int(s["epoch"])
    return s["best_state"], int(s["epoch"]) + 1


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
    p = resolve(params)
    splits = data.to(dev) if data is not None else get_data(p["dataset"], dev)
    args = model_args(p, splits.input_size, splits.n_classes)

    torch.manual_seed(p["seed"])  # same params + seed => same initial weights and dropout masks
    model = build_model(args).to(dev)
    opt = _optimizer(model, p)
    shuffle = torch.Generator().manual_seed(p["seed"])
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    result = TrainResult("ok", p["seed"], 0, 0.0, 0, n_params=sum(x.numel() for x in model.parameters()))
    best_state: dict | None = None
    keep_best = evaluate_test or ckpt is not None or on_snapshot is not None
    x_tr, y_tr, bs = splits.train.x, splits.train.y, p["batch_size"]
    first = 1
    if resume is not None:
        best_state, first = _restore(resume, dev, model, opt, shuffle, result)
        if ckpt is not None and best_state is not None:
            save_checkpoint(ckpt, best_state, args, p, result.best_epoch, result.best_val_acc)

    def snapshot(epoch: int) -> None:
        if on_snapshot is not None:
            on_snapshot(_snapshot(epoch, model, opt, shuffle, result, best_state), epoch)

    last_snapshot = time.monotonic()
    for epoch in range(first, epochs + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        model.train()
        loss_sum, seen = 0.0, 0
        order = torch.randperm(len(y_tr), generator=shuffle).to(dev)
        for i in range(0, len(y_tr), bs):
            idx = order[i : i + bs]
            loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
            value = float(loss.detach())
            if not math.isfinite(value) or value > p["diverge_loss"]:
                result.status = "diverged"
                result.reason = f"loss {value:.4g} at epoch {epoch}, batch {i // bs}"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if p["clip_norm"] > 0:  # after backward, before the step
                nn.utils.clip_grad_norm_(model.parameters(), p["clip_norm"])
            opt.step()
            if on_step is not None:
                on_step()
            loss_sum += value * len(idx)
            seen += len(idx)
        if result.status == "diverged":
            break
        val_loss, val_acc = evaluate(model, splits.val)
        if on_step is not None:
            on_step()
        if not math.isfinite(val_loss):
            result.status, result.reason = "diverged", f"validation loss {val_loss} at epoch {epoch}"
            break
        point: Point = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
        }
        result.curve.append(point)
        result.epochs_run = epoch
        if val_acc > result.best_val_acc or result.best_epoch == 0:
            result.best_val_acc, result.best_epoch = val_acc, epoch
            if keep_best:
                best_state = copy.deepcopy(model.state_dict())
            if ckpt is not None:
                save_checkpoint(ckpt, model.state_dict(), args, p, epoch, val_acc)
        for g in opt.param_groups:
            g["lr"] *= p["lr_decay"]
        if on_epoch is not None:
            on_epoch(point)
        if epoch < epochs and should_stop is not None and should_stop():
            result.status = "stopped"
            snapshot(epoch)
            break
        if epoch < epochs and time.monotonic() - last_snapshot >= snapshot_every:
            snapshot(epoch)
            last_snapshot = time.monotonic()

    if evaluate_test and best_state is not None:
        model.load_state_dict(best_state)
        result.test_loss, result.test_acc = evaluate(model, splits.test)
    result.seconds = time.perf_counter() - t_start
    return result
