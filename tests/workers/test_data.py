"""Datasets: MNIST's IDX files (our reader, checked against torchvision's) on tiny files, digits,
splits."""

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from workers.data import DatasetUnavailable, load_dataset


def write_idx(raw, n_train=40, n_test=10, seed=0):
    """Write the four MNIST IDX files (unpacked, big-endian headers) with random content."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        out[prefix] = (images, labels)
    return out


def rows(split):
    return {tuple(r) for r in split.x.reshape(len(split), -1).tolist()}


def test_mnist_reads_pixel_by_pixel(tmp_path):
    files = write_idx(tmp_path / "MNIST" / "raw")
    s = load_dataset("mnist", tmp_path, val_size=8, download=False)
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 10)
    assert s.train.x.shape == (32, 784, 1) and s.train.x.dtype == torch.float32
    assert s.seq_len == 784 and s.n_classes == 10
    assert 0.0 <= float(s.train.x.min()) and float(s.train.x.max()) <= 1.0
    images, labels = files["t10k"]
    # test split keeps file order: row-major pixels scaled by 255
    np.testing.assert_allclose(s.test.x[3, :, 0].numpy(), images[3].reshape(-1) / 255.0, rtol=1e-6)
    assert s.test.y.tolist() == labels.tolist()


def test_pmnist_is_a_fixed_permutation_of_mnist(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    a = load_dataset("mnist", tmp_path, val_size=8, download=False)
    p1 = load_dataset("pmnist", tmp_path, val_size=8, download=False)
    p2 = load_dataset("pmnist", tmp_path, val_size=8, download=False)
    assert torch.equal(p1.test.x, p2.test.x)
    assert not torch.equal(p1.test.x, a.test.x)
    # same multiset of pixel values per image, and one permutation for all images
    torch.testing.assert_close(p1.test.x.sort(1).values, a.test.x.sort(1).values)
    perm = torch.randperm(784, generator=torch.Generator().manual_seed(p1.meta["permutation_seed"]))
    torch.testing.assert_close(p1.test.x, a.test.x[:, perm])


def test_the_idx_reader_matches_torchvisions(tmp_path):
    from torchvision.datasets import MNIST

    write_idx(tmp_path / "MNIST" / "raw", n_train=30, n_test=7, seed=3)
    s = load_dataset("mnist", tmp_path, val_size=5, download=False)
    ref = MNIST(str(tmp_path), train=False, download=False)
    assert torch.equal(s.test.x, ref.data.reshape(7, 784, 1).float() / 255.0)
    assert torch.equal(s.test.y, ref.targets)


def test_mnist_loads_where_torchvision_is_not_installed(tmp_path):
    """An air-gapped GPU host may have torch and no torchvision: files in place are enough."""
    write_idx(tmp_path / "MNIST" / "raw")
    code = ("import sys; sys.modules['torchvision'] = None; from workers.data import load_dataset; "
            f"s = load_dataset('mnist', {str(tmp_path)!r}, val_size=8, download=True); "
            "print(len(s.train), len(s.test))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "32 10", out.stderr[-2000:]


def test_a_file_that_is_not_idx_is_unavailable_data(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetUnavailable, match="not an IDX file"):
        load_dataset("mnist", tmp_path, download=False)


def test_missing_mnist_names_the_directory(tmp_path):
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset("mnist", tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "SRU_HPO_DATA_DIR" in str(err.value)


def test_digits_shapes_and_disjoint_splits():
    s = load_dataset("digits")
    assert s.seq_len == 64 and s.input_size == 1 and s.n_classes == 10
    assert (len(s.train), len(s.val), len(s.test)) == (1137, 300, 360)
    tr, va, te = rows(s.train), rows(s.val), rows(s.test)
    # sklearn's 1797 digits images are all distinct, so disjoint content = disjoint splits
    assert len(tr) + len(va) + len(te) == 1797
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert set(s.train.y.tolist()) == set(range(10))


def test_split_is_fixed_across_loads():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.y, b.test.y)


def test_digits_are_sklearns_with_the_frozen_stratified_split():
    """The loader reads scikit-learn's CSV itself and a frozen split file; both must equal what
    scikit-learn gives (the split is the one every measured number in the README used)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from workers.data import SPLIT_SEED, _carve

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).unsqueeze(-1)
    y = torch.tensor(d.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(np.arange(1797), test_size=360,
                                           random_state=SPLIT_SEED, stratify=d.target)
    train, val = _carve(x[idx_train], y[idx_train], 300)
    s = load_dataset("digits")
    assert torch.equal(s.test.x, x[idx_test]) and torch.equal(s.test.y, y[idx_test])
    assert torch.equal(s.train.x, train.x) and torch.equal(s.train.y, train.y)
    assert torch.equal(s.val.x, val.x) and torch.equal(s.val.y, val.y)


def test_loading_digits_does_not_import_sklearn():
    code = ("import sys; from workers.data import load_dataset; load_dataset('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]", out.stdout[:500]


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("cifar")
