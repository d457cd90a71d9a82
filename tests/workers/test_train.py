"""The training objective on digits: learning, reproducibility, divergence, checkpoints."""

import io
import math

import pytest
import torch

from search_spaces.params import resolve
from workers.data import load_dataset
from workers.train import evaluate, load_checkpoint, train

TINY = {"model": "sru", "dataset": "digits", "phi_size": 16, "r_size": 4, "out_size": 16,
        "lr": 0.01, "batch_size": 64}
KEYS = {"epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds"}


def test_short_run_lowers_loss_and_returns_a_curve():
    points = []
    r = train(TINY, epochs=4, on_epoch=points.append)
    assert r.status == "ok" and r.epochs_run == 4
    assert [p["epoch"] for p in r.curve] == [1, 2, 3, 4] and r.curve == points
    assert all(set(p) == KEYS for p in r.curve)
    assert r.curve[-1]["train_loss"] < r.curve[0]["train_loss"]
    assert r.best_val_acc == max(p["val_acc"] for p in r.curve)
    assert r.curve[r.best_epoch - 1]["val_acc"] == r.best_val_acc
    assert r.test_acc is None  # the search never looks at the test split


def test_same_params_and_seed_same_curve():
    strip = lambda c: [{k: v for k, v in p.items() if k != "seconds"} for p in c]  # noqa: E731
    a, b = train({**TINY, "seed": 7}, epochs=2), train({**TINY, "seed": 7}, epochs=2)
    c = train({**TINY, "seed": 8}, epochs=2)
    assert strip(a.curve) == strip(b.curve)
    assert strip(a.curve) != strip(c.curve)


def test_exploding_loss_is_diverged_not_an_exception():
    # a batch loss above diverge_loss ends the run (cross-entropy starts near ln 10 = 2.3)
    r = train({**TINY, "lr": 10.0, "optimizer": "sgd", "clip_norm": 0.0, "diverge_loss": 1.0},
              epochs=3)
    assert r.status == "diverged" and r.epochs_run == 0
    assert "loss" in r.reason


def test_lr_decay_and_sgd():
    r = train({**TINY, "optimizer": "sgd", "lr": 0.1, "lr_decay": 0.5}, epochs=3)
    assert [p["lr"] for p in r.curve] == pytest.approx([0.1, 0.05, 0.025])


def test_should_stop_ends_after_the_epoch():
    calls = []
    r = train(TINY, epochs=5, should_stop=lambda: calls.append(1) or len(calls) >= 2)
    assert r.status == "stopped" and r.epochs_run == 2


def test_checkpoint_round_trip_and_test_accuracy(tmp_path):
    ckpt = tmp_path / "best.pt"
    gru = {"model": "gru", "dataset": "digits", "hidden_size": 16, "lr": 0.01, "batch_size": 64}
    r = train(gru, epochs=3, checkpoint_path=ckpt,
              evaluate_test=True)
    model, payload = load_checkpoint(ckpt)
    assert payload["epoch"] == r.best_epoch and payload["val_acc"] == r.best_val_acc
    data = load_dataset("digits")
    _, val_acc = evaluate(model, data.val)
    _, test_acc = evaluate(model, data.test)
    assert val_acc == pytest.approx(r.best_val_acc)
    assert test_acc == pytest.approx(r.test_acc)
    assert 0.0 <= r.test_acc <= 1.0 and math.isfinite(r.test_loss)


def test_checkpoint_holds_no_code(tmp_path):
    ckpt = tmp_path / "best.pt"
    train(TINY, epochs=1, checkpoint_path=ckpt)
    payload = torch.load(ckpt, weights_only=True)  # refuses anything but tensors and plain data
    assert payload["model_args"]["model"] == "sru"


@pytest.mark.parametrize(("key", "value"), [("optimizer", "rmsprop"), ("lr", 0.0),
                                            ("lr_decay", 1.5), ("batch_size", 0)])
def test_bad_training_params(key, value):
    with pytest.raises(ValueError, match=rf"^{key}:"):
        resolve({**TINY, key: value})


def test_no_process_wide_torch_setting_leaks_out_of_a_trial():
    flags = lambda: (torch.get_num_threads(), torch.backends.cudnn.benchmark,  # noqa: E731
                     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                     torch.get_default_dtype(), torch.is_grad_enabled())
    before = flags()
    train(TINY, epochs=1)
    assert flags() == before


def test_resume_from_a_snapshot_gives_the_same_run():
    strip = lambda c: [{k: v for k, v in p.items() if k != "seconds"} for p in c]  # noqa: E731
    params = {**TINY, "dropout": 0.2, "lr_decay": 0.9}
    straight = train(params, epochs=5, evaluate_test=True)
    snaps: list[bytes] = []
    first = train(params, epochs=5, on_snapshot=lambda b, e: snaps.append(b), snapshot_every=0.0,
                  should_stop=lambda: len(snaps) >= 2)
    assert first.status == "stopped" and first.epochs_run == 3 and len(snaps) == 3
    resumed = train(params, epochs=5, resume=snaps[-1], evaluate_test=True)
    assert resumed.resumed_from == 3 and resumed.status == "ok"
    assert strip(resumed.curve) == strip(straight.curve)
    assert resumed.best_val_acc == straight.best_val_acc and resumed.test_acc == straight.test_acc
    torch.load(io.BytesIO(snaps[-1]), weights_only=True)  # tensors and plain data only
