"""Forward+backward time of the SRU against LSTM and GRU classifiers, side by side in one run.

Pixel-MNIST shape by default: B=128, T=784, one input per step. The SRU is the issue's
configuration (phi 200, r 60, out 200, A = 0, 0.25, 0.5, 0.9, 0.99); LSTM and GRU have 200
units. Models are timed interleaved (round robin) so machine noise hits all of them alike;
the median of the repeats is reported with the ratios SRU/LSTM and SRU/GRU.

    python benchmarks/cell_speed.py [--device cpu|cuda|auto] [--repeats 5] [--batch 128] [--steps 784]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from workers.baselines import GRUClassifier, LSTMClassifier
from workers.sru import SRUClassifier


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=784)
    args = ap.parse_args()
    dev_name = args.device
    if dev_name == "auto":
        dev_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev_name)
    torch.manual_seed(0)
    x = torch.rand(args.batch, args.steps, 1, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    alphas = [0.0, 0.25, 0.5, 0.9, 0.99]
    models: dict[str, nn.Module] = {
        "sru": SRUClassifier(1, 10, 200, 60, 200, alphas),
        "sru(autograd)": SRUClassifier(1, 10, 200, 60, 200, alphas, fused=False),
        "lstm": LSTMClassifier(1, 10, hidden_size=200),
        "gru": GRUClassifier(1, 10, hidden_size=200),
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.to(device)
    for rep in range(args.repeats + 1):  # first round is warm-up
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            sync(device)
            t0 = time.perf_counter()
            nn.functional.cross_entropy(m(x), y).backward()
            sync(device)
            if rep > 0:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"device={device} threads={torch.get_num_threads()} B={args.batch} T={args.steps} "
        f"repeats={args.repeats} torch={torch.__version__}"
    )
    for name, t in med.items():
        print(f"  {name:14s} fwd+bwd median {t * 1000:9.1f} ms")
    print(f"ratio sru/lstm = {med['sru'] / med['lstm']:.3f}")
    print(f"ratio sru/gru  = {med['sru'] / med['gru']:.3f}")
    print(f"ratio sru(autograd)/sru = {med['sru(autograd)'] / med['sru']:.3f}")
    f_sru = SRUClassifier.flops_per_step(1, 200, 60, len(alphas))
    f_lstm = 4 * 200 * (200 + 1)
    print(f"multiply-add ratio per step sru/lstm = {f_sru / f_lstm:.3f}")


if __name__ == "__main__":
    main()
