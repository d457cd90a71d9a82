"""Worker memory stays bounded: SRU buffers belong to the model and go with it.

Before the fix, SRUScan kept one workspace per shape in a class-level pool that was never
emptied: a worker that trained six shapes at T=784 held six sets of BPTT buffers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = r"""
import gc, json, torch
from workers.sru import SRUClassifier

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

torch.manual_seed(0)
T, B, out = 784, 32, []
shapes = [(128, 32), (144, 40), (160, 48), (176, 56), (192, 64), (208, 72)]  # (phi, r)
for phi, r in shapes:
    m = SRUClassifier(1, 10, phi, r, 32, [0.0, 0.5, 0.9, 0.99, 0.999])
    x, y = torch.rand(B, T, 1), torch.randint(0, 10, (B,))
    for b in (B, B - 7):  # a full batch, then a smaller last one
        torch.nn.functional.cross_entropy(m(x[:b]), y[:b]).backward()
    ws = m.workspace.nbytes()
    del m
    gc.collect()
    out.append({"rss": rss(), "workspace": ws})
print(json.dumps(out))
"""


@pytest.mark.slow
def test_six_shapes_grow_rss_by_at_most_one_workspace():
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert res.returncode == 0, res.stderr
    steps = json.loads(res.stdout)
    largest = max(s["workspace"] for s in steps)
    growth = steps[-1]["rss"] - steps[0]["rss"]
    # a pool per shape would add five more workspaces (each 90-160 MB here)
    assert growth <= largest, (growth, [s["rss"] for s in steps])


def test_a_smaller_batch_reuses_the_full_batch_buffers():
    import torch

    from workers.sru import SRUClassifier

    m = SRUClassifier(1, 10, 16, 4, 8, [0.0, 0.9])
    x = torch.rand(8, 20, 1)
    m(x).sum().backward()
    full = m.workspace.nbytes()
    ptr = m.workspace.mus.data_ptr()
    m(x[:5]).sum().backward()  # the last, smaller batch
    assert m.workspace.nbytes() == full and m.workspace.mus.data_ptr() == ptr
    assert m.workspace.mus.shape[1] == 5
