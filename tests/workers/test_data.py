"""Datasets: MNIST through torchvision's real reader on tiny IDX files, digits, splits."""

import struct

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


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("cifar")
