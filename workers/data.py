"""Datasets as (N, T, 1) float tensors in [0, 1] with train / validation / test splits.

- ``mnist``: MNIST's four IDX files read pixel by pixel, 784 steps of one value, row-major. The
  files are read here with numpy (torchvision is needed only to download them, so a GPU host
  without torchvision trains on files put in place).
- ``pmnist``: the same with one fixed random permutation of the 784 positions (seed recorded).
- ``digits``: scikit-learn's 8x8 digits, 64 steps; ships with scikit-learn, no network.

Validation is carved from the training set with a fixed seed; the search optimises validation
accuracy and only the final retrain looks at the test split.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from search_spaces.params import DATASETS

__all__ = ["DATASETS", "Split", "Splits", "DatasetUnavailable", "load_dataset"]

PMNIST_SEED = 92916  # fixed permutation for pmnist; recorded in Splits.meta
SPLIT_SEED = 1234  # the validation carve-out never changes with the trial seed
DEFAULT_VAL_SIZE = {"mnist": 5000, "pmnist": 5000, "digits": 300}


class DatasetUnavailable(RuntimeError):
    """The dataset is not on disk and could not be downloaded."""


@dataclass
class Split:
    x: Tensor  # (N, T, 1) float32 in [0, 1]
    y: Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Splits:
    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int
    meta: dict = field(default_factory=dict)

    @property
    def seq_len(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.train.x.shape[2])

    def to(self, device: torch.device | str) -> Splits:
        return Splits(
            self.name, self.train.to(device), self.val.to(device), self.test.to(device),
            self.n_classes, self.meta,
        )


def _carve(x: Tensor, y: Tensor, val_size: int) -> tuple[Split, Split]:
    if not 0 < val_size < len(y):
        raise ValueError(f"val_size must be in (0, {len(y)}), got {val_size}")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])


DIGITS_SPLIT = Path(__file__).with_name("digits_split.txt")
N_DIGITS_TEST = 360


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (1797, 64) and labels, read from the CSV that ships in its wheel.

    Reading the file directly spares each worker the 2-3 s import of scikit-learn and SciPy;
    ``load_digits`` is the fallback where the file is not at its usual place."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        csv = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            data = np.loadtxt(csv, delimiter=",")  # 64 pixels, then the label
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


def _digits(val_size: int) -> Splits:
    pixels, labels = _digits_arrays()
    x = torch.tensor(pixels / 16.0, dtype=torch.float32).unsqueeze(-1)  # (1797, 64, 1)
    y = torch.tensor(labels, dtype=torch.int64)
    # a fixed stratified split (train part in its order, then the 360 test digits), frozen in a
    # file so that no library upgrade can move a digit between train and test
    order = torch.tensor([int(i) for line in DIGITS_SPLIT.read_text().splitlines()
                          if not line.startswith("#") for i in line.split()])
    idx_train, idx_test = order[:-N_DIGITS_TEST], order[-N_DIGITS_TEST:]
    train, val = _carve(x[idx_train], y[idx_train], val_size)
    return Splits("digits", train, val, Split(x[idx_test], y[idx_test]), 10)


IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_MAGIC = {3: 2051, 1: 2049}  # unsigned-byte data, 3 (images) or 1 (labels) dimensions


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An unpacked IDX file of unsigned bytes: a big-endian magic number, ``dims`` sizes, data."""
    raw = path.read_bytes()
    header = np.frombuffer(raw[:4 * (1 + dims)].ljust(4 * (1 + dims), b"\0"), dtype=">u4")
    if int(header[0]) != IDX_MAGIC[dims]:
        raise OSError(f"{path} is not an IDX file of {dims} dimension(s)")
    shape = tuple(int(n) for n in header[1:])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + dims)).reshape(shape)


def _download_mnist(data_dir: Path) -> None:
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:
        raise OSError("downloading MNIST needs torchvision, which is not installed") from exc
    for train in (True, False):
        MNIST(str(data_dir), train=train, download=True)


def _mnist_raw(data_dir: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    """(images (N, 28, 28) uint8, labels (N,)) of one MNIST part, downloaded first if allowed."""
    raw = data_dir / "MNIST" / "raw"
    images, labels = (raw / name for name in IDX_FILES[train])
    try:
        if download and not (images.exists() and labels.exists()):
            _download_mnist(data_dir)
        return (torch.from_numpy(read_idx(images, 3).copy()),
                torch.from_numpy(read_idx(labels, 1).astype(np.int64)))
    except (RuntimeError, OSError) as exc:  # download failed or files missing
        raise DatasetUnavailable(
            f"MNIST is not in {raw} and could not be downloaded ({exc}). "
            "Put the four IDX files there (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), or set "
            "SRU_HPO_DATA_DIR to a folder that has them, or allow network access once."
        ) from exc


def _mnist(data_dir: Path, val_size: int | None, permute: bool, download: bool) -> Splits:
    def pixels(part: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        images, labels = part
        return images.reshape(len(images), -1, 1).to(torch.float32) / 255.0, labels  # (N, 784, 1)

    x_tr, y_tr = pixels(_mnist_raw(data_dir, True, download))
    x_te, y_te = pixels(_mnist_raw(data_dir, False, download))
    meta: dict = {}
    if permute:
        perm = torch.randperm(x_tr.shape[1], generator=torch.Generator().manual_seed(PMNIST_SEED))
        x_tr, x_te = x_tr[:, perm], x_te[:, perm]
        meta = {"permutation_seed": PMNIST_SEED}
    if val_size is None:  # 5,000 of MNIST's 60,000; a tenth of a smaller (synthetic) set
        val_size = min(DEFAULT_VAL_SIZE["mnist"], max(1, len(y_tr) // 10))
    train, val = _carve(x_tr, y_tr, val_size)
    return Splits("pmnist" if permute else "mnist", train, val, Split(x_te, y_te), 10, meta)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    val_size: int | None = None,
    download: bool | None = None,
) -> Splits:
    """Load ``name`` (one of DATASETS) on CPU. ``data_dir`` defaults to SRU_HPO_DATA_DIR,
    ``download`` to SRU_HPO_DOWNLOAD."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown {name!r}, expected one of {', '.join(DATASETS)}")
    if name == "digits":
        return _digits(DEFAULT_VAL_SIZE[name] if val_size is None else int(val_size))
    val_size = None if val_size is None else int(val_size)
    from sru_hpo.settings import get_settings

    if data_dir is None:
        data_dir = get_settings().data_dir
    if download is None:
        download = get_settings().download
    return _mnist(Path(data_dir), val_size, permute=name == "pmnist", download=download)
