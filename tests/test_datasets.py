"""IDX reading on files the test writes, and Randman's determinism."""

import gzip

import numpy as np
import pytest

from snnjax.datasets import load_idx, randman, read_idx


def write_idx(path, array, code=0x08, compress=False):
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = (
        header + array.astype(array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype).tobytes()
    )
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)


def write_learnable_idx(folder, sizes=(("train", 512), ("t10k", 128)), classes=10, seed=0):
    """IDX files of a problem a network learns in a few steps: class c lights a 7x7 block of its own
    (one of ten places) over faint noise, so accuracy well above chance (1/10) shows that training works."""
    rng = np.random.default_rng(seed)
    for split, n in sizes:
        labels = rng.integers(0, classes, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            row, col = 7 * (int(c) // 5) + 3, 5 * (int(c) % 5) + 1
            images[i, row : row + 7, col : col + 7] = 255
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)


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
    a, b = (
        randman(num_classes=3, units=10, steps=20, samples_per_class=5, seed=1),
        randman(num_classes=3, units=10, steps=20, samples_per_class=5, seed=1),
    )
    np.testing.assert_array_equal(a.spikes, b.spikes)
    assert a.spikes.shape == (15, 20, 10) and np.all(a.spikes.sum(axis=1) == 1)
    assert not np.array_equal(a.spikes, randman(num_classes=3, units=10, steps=20, samples_per_class=5, seed=2).spikes)


# --- One loader, batching -----------------------------------------------------------------

from snnjax.datasets import DATASETS, Dataset, batch_indices, batches, bin_spikes, download_shd, load, load_shd  # noqa: E402

SMALL_RANDMAN = dict(num_classes=3, units=6, steps=12, samples_per_class=10)


def test_load_randman_split_is_a_partition_and_deterministic():
    train, test = load("randman", "train", **SMALL_RANDMAN), load("randman", "test", **SMALL_RANDMAN)
    assert train.inputs.shape == (24, 12, 6) and test.inputs.shape == (6, 12, 6)
    assert train.kind == "spikes" and train.num_classes == 3 and train.inputs.dtype == np.uint8
    whole = randman(**SMALL_RANDMAN)
    np.testing.assert_array_equal(np.concatenate([train.inputs, test.inputs]), whole.spikes.astype(np.uint8))
    np.testing.assert_array_equal(load("randman", "train", **SMALL_RANDMAN).inputs, train.inputs)


def test_load_rejects_bad_names_and_says_how_to_get_missing_sets(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset 'nope'; choose one of randman"):
        load("nope")
    with pytest.raises(ValueError, match="split must be"):
        load("randman", "validation")
    monkeypatch.setenv("SNNJAX_DATA", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(FileNotFoundError, match="SNNJAX_DATA") as error:
        load("kmnist", "train")
    assert "snnjax download kmnist" in str(error.value) and "\n" not in str(error.value)
    assert set(DATASETS) == {
        "randman",
        "shd",
        "ssc",
        "nmnist",
        "dvs_gesture",
        "cifar10_dvs",
        "mnist",
        "fashion_mnist",
        "kmnist",
        "emnist",
        "cifar10",
    }


def test_load_reads_idx_images(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (9, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, 9).astype(np.uint8))
    data = load("mnist", "train", directory=tmp_path, source="idx")
    assert data.kind == "image" and data.inputs.shape == (9, 28, 28) and data.num_classes == 10


def test_batches_are_deterministic_per_seed_and_epoch_and_cover_the_epoch():
    data = load("randman", "train", **SMALL_RANDMAN)
    first = [(x.copy(), y.copy()) for x, y in batches(data, 5, seed=3, epoch=1)]
    again = list(batches(data, 5, seed=3, epoch=1))
    assert len(first) == 4 and first[0][0].shape == (12, 5, 6) and first[0][0].dtype == np.float32
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(
        np.concatenate(batch_indices(24, 5, seed=3, epoch=1)), np.concatenate(batch_indices(24, 5, seed=3, epoch=2))
    )
    indices = np.concatenate(batch_indices(24, 5, seed=3, epoch=1, drop_remainder=False))
    np.testing.assert_array_equal(np.sort(indices), np.arange(24))
    # The raster is the stored one, made time-major.
    idx = batch_indices(24, 5, seed=3, epoch=1)[0]
    np.testing.assert_array_equal(first[0][0], np.swapaxes(data.inputs[idx], 0, 1))


def test_batches_encode_images_on_request():
    images = np.array([[[0, 255], [255, 0]]] * 4, np.uint8)
    data = Dataset(images, np.arange(4, dtype=np.int32), 4, "image", "toy")
    x, _ = next(batches(data, 2, shuffle=False))
    assert x.shape == (2, 2, 2) and x.max() == 1.0
    x, _ = next(batches(data, 2, shuffle=False, encoder="latency", num_steps=3))
    np.testing.assert_array_equal(x[:, 0], [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    x, _ = next(batches(data, 2, shuffle=False, encoder="rate", num_steps=7))
    assert x.shape == (7, 2, 4) and np.all(x[:, :, [0, 3]] == 0) and np.all(x[:, :, [1, 2]] == 1)
    with pytest.raises(ValueError, match="larger than the 4 examples"):
        next(batches(data, 5))
    with pytest.raises(ValueError, match="unknown encoding"):
        next(batches(data, 2, encoder="morse", num_steps=3))
    with pytest.raises(ValueError, match="already over time"):
        next(batches(load("randman", "train", **SMALL_RANDMAN), 2, encoder="rate", num_steps=3))


# --- Spiking Heidelberg Digits ------------------------------------------------------------


def write_shd(path, times, units, labels):
    import h5py

    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        spikes.create_dataset(
            "times",
            data=np.array([np.asarray(t, np.float32) for t in times], dtype=object),
            dtype=h5py.vlen_dtype(np.float32),
        )
        spikes.create_dataset(
            "units",
            data=np.array([np.asarray(u, np.uint16) for u in units], dtype=object),
            dtype=h5py.vlen_dtype(np.uint16),
        )
        f.create_dataset("labels", data=np.asarray(labels, np.uint8))


SHD_TIMES = [[0.0, 0.05, 0.06, 0.99, 1.5], [0.5]]
SHD_UNITS = [[0, 3, 3, 699, 1], [2]]


def test_load_shd_bins_written_hdf5_to_a_raster(tmp_path):
    write_shd(tmp_path / "shd_test.h5", SHD_TIMES, SHD_UNITS, [7, 19])
    data = load_shd("test", tmp_path, steps=10, max_time=1.0)
    assert data.spikes.shape == (2, 10, 700) and data.spikes.dtype == np.uint8
    expected = np.zeros((2, 10, 700), np.uint8)
    expected[0, 0, 0] = expected[0, 0, 3] = expected[0, 9, 699] = 1  # 1.5 s lies past max_time
    expected[1, 5, 2] = 1
    np.testing.assert_array_equal(data.spikes, expected)
    np.testing.assert_array_equal(data.labels, [7, 19])
    counts = load_shd("test", tmp_path, steps=10, max_time=1.0, binary=False).spikes
    assert counts[0, 0, 3] == 2 and counts.sum() == 5
    via_load = load("shd", "test", directory=tmp_path, steps=10, max_time=1.0)
    assert via_load.num_classes == 20 and via_load.kind == "spikes"
    np.testing.assert_array_equal(via_load.inputs, data.spikes)
    np.testing.assert_array_equal(bin_spikes(SHD_TIMES, SHD_UNITS, 10, 1.0, 700), data.spikes)


def test_load_shd_missing_file_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="snnjax download shd"):
        load_shd("train", tmp_path)


def test_download_shd_from_a_local_server(tmp_path, monkeypatch):
    import hashlib
    import io
    import urllib.request

    write_shd(tmp_path / "source.h5", SHD_TIMES, SHD_UNITS, [1, 2])
    archive = gzip.compress((tmp_path / "source.h5").read_bytes())
    files = {"md5sums.txt": f"{hashlib.md5(archive).hexdigest()}  shd_test.h5.gz\n".encode(), "shd_test.h5.gz": archive}
    requested = []

    def urlopen(url, timeout):
        requested.append((url, timeout))
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    folder = download_shd(tmp_path / "shd", splits=("test",), timeout=5.0, base_url="https://example.org/d")
    assert [u for u, _ in requested] == ["https://example.org/d/md5sums.txt", "https://example.org/d/shd_test.h5.gz"]
    assert sorted(p.name for p in folder.iterdir()) == ["shd_test.h5"]
    np.testing.assert_array_equal(load_shd("test", folder).labels, [1, 2])
    files["md5sums.txt"] = b"0123  shd_test.h5.gz\n"
    with pytest.raises(ValueError, match="MD5"):
        download_shd(tmp_path / "shd", splits=("test",), base_url="https://example.org/d")


# --- tensorflow-datasets ------------------------------------------------------------------


def test_tfds_path_on_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")
    from snnjax.datasets import load_tfds

    with tfds.testing.mock_data(num_examples=6):
        data = load_tfds("mnist", "train", tmp_path)
        assert data.images.shape == (6, 28, 28) and data.images.dtype == np.uint8 and data.labels.dtype == np.int32
        via_load = load("mnist", "test", directory=tmp_path, source="tfds")
        assert via_load.inputs.shape == (6, 28, 28) and via_load.num_classes == 10
        cifar = load_tfds("cifar10", "test", tmp_path)
        assert cifar.images.shape == (6, 32, 32, 3)


def test_tfds_missing_set_fails_at_once_with_instructions(tmp_path):
    pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")
    from snnjax.datasets import load_tfds

    with pytest.raises(FileNotFoundError, match="snnjax download emnist"):
        load_tfds("emnist", "train", tmp_path / "empty")


def test_any_arrays_are_a_dataset_of_the_kind_their_shape_says():
    from snnjax.datasets import batches, from_arrays

    static = from_arrays(np.arange(12.0).reshape(4, 3), [0, 1, 2, 1])
    assert (static.kind, static.num_classes, static.inputs.dtype, static.labels.dtype) == (
        "static",
        3,
        np.float32,
        np.int32,
    )
    x, _ = next(batches(static, 2, shuffle=False, encoder="current", num_steps=5))
    assert x.shape == (5, 2, 3) and np.array_equal(x[0], static.inputs[:2])  # as it is: not divided by 255
    sequences = from_arrays(np.random.default_rng(0).random((4, 7, 2)), np.array([0, 1, 0, 1]), num_classes=5)
    x, _ = next(batches(sequences, 2, shuffle=False))
    assert sequences.kind == "sequence" and sequences.num_classes == 5
    assert np.array_equal(x, np.swapaxes(sequences.inputs[:2], 0, 1))  # time-major [T, B, C]
    assert from_arrays(np.zeros((2, 3, 4), bool), [0, 1]).kind == "spikes"
    assert from_arrays(np.zeros((2, 5, 5), np.uint8), [0, 1], kind="image").kind == "image"


@pytest.mark.parametrize(
    "inputs, labels, options, message",
    [
        (np.zeros((2, 5, 5), np.uint8), [0, 1], {}, "mine: cannot tell what inputs of dtype uint8 and rank 3 are"),
        (np.zeros((2, 5)), [0, 1], {"kind": "sequence"}, "mine: sequence inputs must be [N, T, C], got float64[2, 5]"),
        (np.zeros((2, 5)), [0, 1], {"kind": "video"}, "mine: kind must be one of image, spikes, static, sequence"),
        (np.zeros((2, 5)), [0, 1, 1], {}, "mine: labels must be [N] = [2], one per input; got [3]"),
        (np.zeros((2, 5)), [0, 7], {"num_classes": 3}, "mine: labels must be integers in [0, 3), found 7"),
        (np.zeros((2, 5)), [0.0, 1.0], {}, "mine: labels must be integers, got dtype float64"),
        (np.full((2, 5), np.nan), [0, 1], {}, "mine: inputs hold 10 NaN or infinite values"),
    ],
)
def test_arrays_that_are_not_a_dataset_are_refused_in_one_line(inputs, labels, options, message):
    from snnjax.datasets import from_arrays

    with pytest.raises(ValueError) as error:
        from_arrays(inputs, labels, name="mine", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_npz_files_load_by_path_or_by_name_and_say_what_is_wrong_with_them(tmp_path):
    from snnjax.datasets import load, load_npz
    from snnjax.train.config import data_kind

    path = tmp_path / "mine.npz"
    x = np.random.default_rng(0).random((6, 4, 3)).astype(np.float32)
    np.savez(path, x_train=x[:4], y_train=np.array([0, 1, 0, 1]), x_test=x[4:], y_test=np.array([2, 0]))
    train, test = load(str(path), "train"), load("mine", "test", directory=tmp_path)
    assert (train.name, train.kind, train.num_classes, test.num_classes) == ("mine", "sequence", 3, 3)
    assert np.array_equal(test.inputs, x[4:]) and data_kind("mine", str(tmp_path)) == ("sequence", 4, "mine")
    assert load_npz(path, "train", num_classes=8).num_classes == 8
    np.savez(path, x_train=x[:4], y_train=np.array([0, 1, 0, 1]), x_test=x[4:], y_test=np.array([2, 0]), num_classes=5)
    assert load_npz(path, "test").num_classes == 5
    bad = {
        "no_test.npz": dict(x_train=x, y_train=np.zeros(6, int)),
        "bad_label.npz": dict(x_train=x[:4], y_train=np.array([0, 1, 0, 1]), x_test=x[4:], y_test=np.array([1, 9])),
    }
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    y4 = np.array([0, 1, 0, 1])
    more = {
        "objects.npz": dict(x_train=np.array([None] * 4, dtype=object), y_train=y4, x_test=x[:4], y_test=y4),
        "mismatch.npz": dict(x_train=x[:4], y_train=y4, x_test=x[:4, :, :2], y_test=y4),
        "empty.npz": dict(x_train=x[:4], y_train=y4, x_test=x[:0], y_test=y4[:0]),
        "rank.npz": dict(x_train=x[:4, 0, 0], y_train=y4, x_test=x[:4, 0, 0], y_test=y4, kind="sequence"),
    }
    for name, arrays in more.items():
        np.savez(tmp_path / name, **arrays)
    np.savez(tmp_path / "bytes.npz", x_train=x[:4], y_train=y4, x_test=x[:4], y_test=y4, kind=np.bytes_(b"spikes"))
    assert load_npz(tmp_path / "bytes.npz", "test").kind == "spikes"
    for name, message in (
        ("objects.npz", "objects.npz: array 'x_train' holds Python objects"),
        ("mismatch.npz", "mismatch.npz: x_train's examples have shape [4, 3] but x_test's [4, 2]"),
        ("empty.npz", "empty.npz: x_test, y_test: holds no examples (N = 0)"),
        ("rank.npz", "rank.npz: x_train has shape [4], which is not sequence inputs"),
        ("no_test.npz", "no_test.npz: has no array 'x_test'; a .npz data set holds x_train, y_train, x_test, y_test"),
        ("bad_label.npz", "bad_label.npz: x_test, y_test: labels must be integers in [0, 5), found 9"),
        ("broken.npz", "broken.npz: not a readable .npz file"),
    ):
        with pytest.raises(ValueError) as error:
            load_npz(tmp_path / name, "test", num_classes=5 if name == "bad_label.npz" else None)
        assert message in str(error.value), error.value
    with pytest.raises(FileNotFoundError, match="missing.npz: no such .npz file"):
        load(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="unknown dataset 'other'; choose one of randman"):
        load("other", directory=tmp_path)
