"""The semi-synthetic fashion benchmark generator (benchmarks/fashion/make_fashion.py) on tiny inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from tests.scripts import load_script


@pytest.fixture(scope="module")
def gen():
    return load_script("benchmarks/fashion/make_fashion.py")


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_round_trip(gen, tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(gen.read_idx(tmp_path / "x.gz"), arr)


def test_visual_attributes_are_standardised_within_class(gen):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28))
    images[:20] //= 4  # class 0 much darker than class 1
    labels = np.repeat([0, 1], 20)
    a = gen.visual_attributes(images, labels)
    for c in (0, 1):
        np.testing.assert_allclose(a[labels == c].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(a[labels == c].std(0), 1, atol=1e-3)


def test_generated_files_are_complete_and_deterministic(gen, tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 30)
    images = rng.integers(0, 256, size=(300, 28, 28))
    src = tmp_path / "src"
    src.mkdir()
    write_idx(src / "train-images-idx3-ubyte.gz", images)
    write_idx(src / "train-labels-idx1-ubyte.gz", labels)
    out = tmp_path / "out"
    gen.write(out, src, per_domain=48, n_users=60, mean_len=10, beta=4.0, seed=3)
    items = (out / "items.csv").read_text().splitlines()
    inter = (out / "interactions.csv").read_text().splitlines()
    assert items[0] == "item,domain,title,image" and len(items) == 1 + 48 + 48
    assert all(Path(line.split(",")[3]).exists() for line in items[1:])
    assert inter[0] == "user,item,timestamp,domain" and len(inter) > 60 * 4
    assert "SEMI-SYNTHETIC" in (out / "README.md").read_text()
    # deterministic for a seed
    out2 = tmp_path / "out2"
    gen.write(out2, src, per_domain=48, n_users=60, mean_len=10, beta=4.0, seed=3)
    assert (out2 / "interactions.csv").read_text() == (out / "interactions.csv").read_text()
