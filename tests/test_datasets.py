"""IDX reading on files the test writes, and Randman's determinism."""

import gzip

import numpy as np
import pytest

from snnjax.datasets import load_idx, randman, read_idx


def write_idx(path, array, code=0x08, compress=False):
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_reads_written_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress=compress)
    data = load_idx("fashion_mnist", "test", directory=tmp_path)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.labels.dtype == np.int32


def test_read_idx_big_endian_floats_and_bad_files(tmp_path):
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    write_idx(tmp_path / "f.idx", values, code=0x0D)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), values)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(tmp_path / "short")


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNJAX_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SNNJAX_DATA"):
        load_idx("kmnist", "train")
    with pytest.raises(ValueError, match="split must be"):
        load_idx("kmnist", "validation")


def test_randman_is_deterministic_and_single_spike():
    a, b = randman(num_classes=3, units=10, steps=20, samples_per_class=5, seed=1), randman(num_classes=3, units=10, steps=20, samples_per_class=5, seed=1)
    np.testing.assert_array_equal(a.spikes, b.spikes)
    assert a.spikes.shape == (15, 20, 10) and np.all(a.spikes.sum(axis=1) == 1)
    assert not np.array_equal(a.spikes, randman(num_classes=3, units=10, steps=20, samples_per_class=5, seed=2).spikes)
