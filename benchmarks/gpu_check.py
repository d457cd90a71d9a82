"""The prepared device check (``make gpu-check``): correctness, speed and throughput on one GPU,
as one command that finishes in a few minutes and prints a short report. ``--dry-run`` runs the
same steps on the CPU at tiny sizes (the test suite does, so the script cannot rot).

1. **Correctness on the device**, against a float64 CPU reference with the same weights:
   SRUScan forward and backward (fixed and learnable alphas, ``r_size=0``, and a last batch of a
   different size); the GRU and LSTM baselines.
2. **A real trial**: ``sru-hpo worker --device <dev>`` on synthetic pixel-MNIST-shaped IDX files
   (random pixels, the real MNIST reader), stopped after its first epoch with SIGTERM and
   resumed from its snapshot by a second worker; the curve must run on without a gap.
3. **GPU slots**: two ``--device auto --slots-per-gpu 2`` workers hold two different
   (GPU, slot) leases (CUDA only).
4. **Speed**: ms per training step (forward, backward, clipping, Adam) at B=128, T=784: the SRU
   (paper config: phi 200, r 60, out 200, 5 alphas) eager, the SRU with its whole step captured
   in a CUDA graph (CUDA only; measured here, not used by the trainer until it is shown equal
   and faster), cuDNN LSTM-200 and GRU-200; fp32/TF32, and bf16 autocast on CUDA.
5. **Throughput**: training epochs per minute with 1, 2, 4 and 8 trials sharing the device.

Exit status 1 when a correctness check fails.

    python benchmarks/gpu_check.py [--device cuda] [--dry-run]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.baselines import GRUClassifier, LSTMClassifier  # noqa: E402
from workers.sru import SRUClassifier  # noqa: E402

PAPER = {"phi_size": 200, "r_size": 60, "out_size": 200, "alphas": [0.0, 0.5, 0.9, 0.99, 0.999]}
failures: list[str] = []
T0 = time.monotonic()
REPORT: list = []  # the open report file (--report), written line by line


def say(line: str) -> None:
    """One line of the report, on stdout and in the report file at once (a run cut short still
    leaves its partial report); a section's first line carries the seconds since the start."""
    if not line.startswith(" "):
        line = f"[{time.monotonic() - T0:5.0f} s] {line}"
    print(line, flush=True)
    for f in REPORT:
        f.write(line + "\n")
        f.flush()


def check(name: str, ok: bool, detail: str = "") -> None:
    say(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


# -- 1. correctness ---------------------------------------------------------------------------------
def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).abs().max() / (b.abs().max() + 1e-12))


def _compare(name: str, make, x: torch.Tensor, y: torch.Tensor, dev: torch.device,
             tol: float) -> None:
    """``make(reference)`` builds the model; the reference is the plain autograd loop (SRU) in
    float64 on the CPU, the model under test the fast path on ``dev``."""
    torch.manual_seed(0)
    ref = make(True).double()
    test = make(False).to(dev)
    test.load_state_dict(ref.state_dict())
    outs, grads = [], []
    for m, xx in ((ref, x.double()), (test, x.to(dev))):
        m.zero_grad()
        out = m(xx)
        torch.nn.functional.cross_entropy(out.float(), y.to(out.device)).backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    err = max(_max_rel(outs[1], outs[0]), _max_rel(grads[1], grads[0]))
    check(name, err < tol, f"max relative error {err:.1e} (tolerance {tol:.0e})")


def correctness(dev: torch.device, T: int, B: int) -> None:
    say(f"1. correctness on {dev} against float64 on the CPU (T={T}, B={B})")
    tol = 1e-3 if dev.type == "cuda" else 1e-5  # TF32 off here; fp32 vs fp64
    torch.backends.cuda.matmul.allow_tf32 = False
    x, y = torch.rand(B, T, 1), torch.randint(0, 10, (B,))
    for label, kw in (("SRUScan, fixed alphas", {}), ("SRUScan, learnable alphas",
                                                      {"learn_alphas": True}),
                      ("SRU, r_size=0 (iid)", {"r_size": 0})):
        args = {**PAPER, "phi_size": 24, "r_size": 8, "out_size": 16, **kw}
        for b in (B, B - 3):  # and a last batch of a different size
            _compare(f"{label}, batch {b}",
                     lambda ref, a=args: SRUClassifier(1, 10, **a, fused=not ref), x[:b], y[:b],
                     dev, tol)
    for cls in (GRUClassifier, LSTMClassifier):
        _compare(cls.__name__, lambda ref, c=cls: c(1, 10, hidden_size=24), x, y, dev, tol)


# -- 2. a real trial, stopped and resumed -----------------------------------------------------------
def write_synthetic_mnist(raw: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """The four MNIST IDX files with random pixels (pixel-MNIST shaped: 28x28, 10 classes)."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes())


def _worker(env: dict[str, str], device: str, log: Path, *extra: str) -> subprocess.Popen:
    """``sru-hpo worker``, its output in ``log`` (the report quotes it when the worker fails)."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "sru_hpo", "worker", "--device", device,
                                 "--poll", "0.1", *extra], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait(pred, timeout: float, what: str, *procs: subprocess.Popen):  # noqa: ANN001, ANN202
    """``pred()`` once it is true; an error when ``timeout`` passes or a process in ``procs``
    exits first (a worker that died is not waited on for minutes of GPU time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (v := pred()):
            return v
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a worker exited (status {[p.poll() for p in procs]}) before {what}")
        time.sleep(0.2)
    raise TimeoutError(what)


def _quote_log(log: Path, lines: int = 15) -> None:
    for line in log.read_text(errors="replace").splitlines()[-lines:]:
        say(f"    | {line}")


EPOCHS = 8  # of the real trial: enough that the SIGTERM after its first lands mid-run


def real_trial(dev: str, tmp: Path, db_url: str, n_train: int) -> None:
    from trials.store import Store

    say(f"2. a real trial through `sru-hpo worker --device {dev}` on synthetic pixel MNIST")
    write_synthetic_mnist(tmp / "data" / "MNIST" / "raw", n_train, n_train // 5)
    store = Store.connect(db_url, "gpucheck")
    store.ensure_indexes()
    tid = store.jobs.enqueue("check", kind="trial", epochs=EPOCHS, params={
        "model": "sru", "dataset": "mnist", "phi_size": 16, "r_size": 4, "out_size": 16,
        "batch_size": 32, "lr": 0.01})
    env = {**os.environ, "SRU_HPO_MONGO_URL": db_url, "SRU_HPO_DB_NAME": "gpucheck",
           "SRU_HPO_DATA_DIR": str(tmp / "data"), "SRU_HPO_DOWNLOAD": "0",
           "SRU_HPO_SNAPSHOT_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    epochs = lambda: [p["epoch"] for p in store.curves.get(f"check:{tid}")]  # noqa: E731

    def started() -> bool:  # an epoch done, or the job failed before one (then no waiting)
        doc = store.db.jobs.find_one({"_id": f"check:{tid}"}, {"state": 1, "error": 1})
        if doc["state"] == 3:
            raise RuntimeError(f"the trial failed: {doc.get('error')}")
        return len(epochs()) >= 1
    log = tmp / "workers.log"
    a = _worker(env, dev, log)
    try:
        _wait(started, 600, "the first epoch", a)
        a.send_signal(signal.SIGTERM)  # finish the epoch, snapshot, release
        a.wait(300)
        # --burst: a job that a finished before the signal reached it leaves b nothing to wait for
        b = _worker(env, dev, log, "--max-jobs", "1", "--burst")
        b.wait(900)
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        check("trial finished after a resume", False, str(exc))
        _quote_log(log)
        a.kill()
        return
    doc = store.db.jobs.find_one({"_id": f"check:{tid}"})
    check("trial finished after a resume", doc["state"] == 2 and doc["result"]["resumed_from"] >= 1,
          f"state {doc['state']}, resumed from epoch {doc['result'].get('resumed_from')}")
    check("its curve runs on without a gap", epochs() == list(range(1, EPOCHS + 1)),
          str(epochs()))


def gpu_slots(db_url: str, tmp: Path) -> None:
    from trials.store import Store

    say("3. GPU slots: two workers share the first GPU")
    env = {**os.environ, "SRU_HPO_MONGO_URL": db_url, "SRU_HPO_DB_NAME": "gpuslots",
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]}
    ws = [_worker(env, "auto", tmp / "slots.log", "--slots-per-gpu", "2") for _ in range(2)]
    store = Store.connect(db_url, "gpuslots")
    try:
        held = _wait(lambda: (h := {k: o for k, o in store.leases.holders().items() if o})
                     and len(h) == 2 and h, 120, "two leases", *ws)
        check("two workers hold two (GPU, slot) leases", len(set(held.values())) == 2,
              ", ".join(sorted(held)))
    finally:
        for w in ws:
            w.terminate()
            w.wait(60)


# -- 4. speed ---------------------------------------------------------------------------------------
def _step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3,
                           capturable=x.is_cuda)  # capturable: the step can go in a graph

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def _time(step, reps: int, sync) -> float:  # noqa: ANN001
    step()
    step()  # warm-up (cuDNN autotune, allocator)
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _graphed(step, dev: torch.device):  # noqa: ANN001, ANN202
    """The whole training step captured once in a CUDA graph and replayed."""
    s = torch.cuda.Stream(dev)
    s.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream(dev).wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def speed(dev: torch.device, T: int, B: int, reps: int, sru: dict) -> None:
    say(f"4. ms per training step at B={B}, T={T} on {dev}")
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    x, y = torch.rand(B, T, 1, device=dev), torch.randint(0, 10, (B,), device=dev)
    lib = " (cuDNN)" if cuda else ""
    h = sru["out_size"]
    models = {"SRU eager": lambda: SRUClassifier(1, 10, **sru),
              f"LSTM-{h}{lib}": lambda: LSTMClassifier(1, 10, hidden_size=h),
              f"GRU-{h}{lib}": lambda: GRUClassifier(1, 10, hidden_size=h)}
    rows = {}
    for precision in (["fp32/TF32", "bf16"] if cuda else ["fp32"]):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cuda
        for name, make in models.items():
            step = _step_fn(make().to(dev), x, y, precision == "bf16")
            rows[(name, precision)] = _time(step, reps, sync)
            if cuda and name == "SRU eager":
                try:
                    graphed = _graphed(_step_fn(make().to(dev), x, y, precision == "bf16"), dev)
                    rows[("SRU, CUDA graph of the whole step", precision)] = _time(graphed, reps, sync)
                except Exception as exc:  # noqa: BLE001 - reported, not fatal
                    say(f"  SRU CUDA graph ({precision}) could not be captured: {exc!r}"[:300])
    lstm = {p: ms for (n, p), ms in rows.items() if n.startswith("LSTM")}
    for (name, precision), ms in rows.items():
        say(f"  {name:38s} {precision:9s} {ms:9.1f} ms   {ms / lstm[precision]:5.2f}x LSTM")


# -- 5. throughput ----------------------------------------------------------------------------------
THROUGHPUT = r"""
import sys, time, torch
sys.path.insert(0, sys.argv[4])
from workers.sru import SRUClassifier
dev, T, secs = torch.device(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(1)
m = SRUClassifier(1, 10, 200 if dev.type == "cuda" else 16, 60 if dev.type == "cuda" else 4,
                  200 if dev.type == "cuda" else 16, [0.0, 0.5, 0.9, 0.99, 0.999]).to(dev)
opt = torch.optim.Adam(m.parameters(), 1e-3)
x, y = torch.rand(128, T, 1, device=dev), torch.randint(0, 10, (128,), device=dev)
batches, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < secs:
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
    batches += 1
if dev.type == "cuda": torch.cuda.synchronize(dev)
print(batches / (time.perf_counter() - t0))
"""


def throughput(dev: str, T: int, counts: list[int], secs: float, batches_per_epoch: int) -> None:
    say(f"5. training epochs per minute, N trials sharing {dev} ({batches_per_epoch} batches "
        f"of 128 an epoch, T={T})")
    base = None
    for n in counts:
        procs = [subprocess.Popen([sys.executable, "-c", THROUGHPUT, dev, str(T), str(secs),
                                   str(ROOT)], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(n)]
        rates = [float(p.communicate(timeout=secs * 20 + 300)[0].strip().splitlines()[-1])
                 for p in procs]
        epochs_min = sum(rates) * 60 / batches_per_epoch
        base = base or epochs_min
        say(f"  {n} trial(s): {epochs_min:8.1f} epochs/min in all ({epochs_min / base:4.2f}x one)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--report", type=Path, help="also append the report to this file")
    args = ap.parse_args()
    if args.report:
        REPORT.append(args.report.open("a", encoding="utf-8"))
    dev = torch.device("cpu" if args.dry_run else args.device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        say(f"gpu-check on {props.name} ({props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs), torch {torch.__version__}")
    else:
        say(f"gpu-check {'dry run ' if args.dry_run else ''}on the CPU, torch {torch.__version__}")
    T, B = (16, 8) if args.dry_run else (784, 128)
    from service.launcher.embedded_db import EmbeddedMongo

    with tempfile.TemporaryDirectory() as tmp, EmbeddedMongo(Path(tmp) / "db") as db:
        correctness(dev, T if args.dry_run else 64, 8 if args.dry_run else 16)
        real_trial(str(dev), Path(tmp), db.url, 100 if args.dry_run else 2000)
        if dev.type == "cuda":
            gpu_slots(db.url, Path(tmp))
        else:
            say("3. GPU slots: no GPU here (the lease logic is tested with fake UUIDs)")
        sru = PAPER if not args.dry_run else {**PAPER, "phi_size": 16, "r_size": 4,
                                              "out_size": 16}
        speed(dev, T, B, 2 if args.dry_run else 10, sru)
        throughput(str(dev), T, [1, 2] if args.dry_run else [1, 2, 4, 8],
                   0.5 if args.dry_run else 20.0, 430)  # 55,000 / 128 batches: an MNIST epoch
    say(f"done; {len(failures)} failure(s)" + (f": {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
