"""Event-camera sets and SSC: tiny files in each set's own format, read and binned against hand-computed frames."""

import json
import struct

import numpy as np
import pytest

from snnjax import cli
from snnjax.datasets import bin_events, load, load_shd
from snnjax.datasets.events import Events, read_aedat4, read_nmnist


def _nmnist_bytes(events):
    """N-MNIST's 5-byte records (x, y, polarity bit 7 + 23-bit time in µs)."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255])
    return bytes(out)


def test_nmnist_files_bin_into_the_hand_computed_frames_and_are_cached(tmp_path, monkeypatch):
    root = tmp_path / "NMNIST"
    # digit 3: four events over 0..299 us, and a timer overflow (y = 240) before the last; digit 7: one event
    events = {3: [(1, 2, 1, 0), (33, 0, 0, 100), (5, 5, 1, 299), (0, 240, 0, 0), (2, 3, 0, 10)], 7: [(9, 8, 1, 5)]}
    for split in ("Train", "Test"):
        for digit in (3, 7):
            (root / split / str(digit)).mkdir(parents=True)
            (root / split / str(digit) / "00001.bin").write_bytes(_nmnist_bytes(events[digit]))
    e = read_nmnist(root / "Train" / "3" / "00001.bin")
    assert e.t.tolist() == [0, 100, 299, 10 + 8192] and e.y.tolist() == [2, 0, 5, 3]  # the overflow adds 2^13 us
    data = load("nmnist", "train", directory=tmp_path, steps=4)
    assert data.kind == "frames" and data.num_classes == 10 and data.labels.tolist() == [3, 7]
    assert data.inputs.shape == (2, 4, 34, 34, 2) and data.inputs.dtype == np.uint8
    expected = np.zeros((4, 34, 34, 2), np.uint8)  # span 8202 + 1 us in 4 bins of 2050.75 us
    expected[0, 2, 1, 1] = expected[0, 0, 33, 0] = expected[0, 5, 5, 1] = 1
    expected[3, 3, 2, 0] = 1
    np.testing.assert_array_equal(data.inputs[0], expected)
    assert data.inputs[1].sum() == 1 and data.inputs[1, 0, 8, 9, 1] == 1  # digit 7's frames with its label
    cached = tmp_path / ".snnjax-cache" / "nmnist-train-T4-count-d1.npz"
    assert cached.is_file()

    def unread(path):
        raise AssertionError(f"read {path} although the cache holds it")

    from snnjax.datasets import events as module

    with monkeypatch.context() as m:  # the same files: the cache is read, no file is
        m.setitem(module._READERS, "nmnist", unread)
        np.testing.assert_array_equal(load("nmnist", "train", directory=tmp_path, steps=4).inputs, data.inputs)
        with pytest.raises(ValueError, match="although the cache"):  # another binning: another cache
            load("nmnist", "train", directory=tmp_path, steps=4, binary=True)
    (root / "Train" / "3" / "00001.bin").write_bytes(b"")  # a changed file: the cache is rebuilt
    assert load("nmnist", "train", directory=tmp_path, steps=4).inputs[0].sum() == 0
    cached.write_bytes(b"damaged")  # rebuilt from the files
    assert load("nmnist", "train", directory=tmp_path, steps=4).inputs[1].sum() == 1
    (root / "Test" / "3" / "00001.bin").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match=r"00001.bin: cannot be read \(.*5 bytes per event"):
        load("nmnist", "test", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="snnjax download nmnist"):
        load("nmnist", "train", directory=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="unknown option binning"):
        load("nmnist", "train", directory=tmp_path, binning="count")


def test_binning_counts_binary_and_downsampling():
    e = Events(np.array([0, 1, 3, 3]), np.array([0, 0, 2, 3]), np.array([0, 0, 1, 1]), np.array([5, 6, 7, 15]))
    counts = bin_events(e, (4, 4, 2), steps=2, downsample=2)  # [5, 10.5) and [10.5, 16)
    assert counts.shape == (2, 2, 2, 2)
    assert counts[0, 0, 0, 0] == 2 and counts[0, 1, 1, 1] == 1 and counts[1, 1, 1, 1] == 1 and counts.sum() == 4
    assert bin_events(e, (4, 4, 2), steps=2, downsample=2, binary=True)[0, 0, 0, 0] == 1
    many = Events(*(np.zeros(300, int) for _ in range(3)), np.arange(300))
    assert bin_events(many, (1, 1, 1), steps=1)[0, 0, 0, 0] == 255  # counts clip at 255
    empty = Events(*(np.zeros(0, int) for _ in range(4)))
    assert bin_events(empty, (3, 2, 2), steps=5).shape == (5, 2, 3, 2)


def test_dvs_gesture_npy_samples_load_with_their_labels(tmp_path):
    for split, user in (("ibmGestureTrain", "user01_led"), ("ibmGestureTest", "user24_led")):
        folder = tmp_path / "DVSGesture" / split / user
        folder.mkdir(parents=True)
        np.save(folder / "10.npy", np.array([[127, 0, 1, 0.0], [0, 127, 0, 2.0]]))  # t in ms
        np.save(folder / "4.npy", np.array([[64, 64, 1, 1.0]]))
    data = load("dvs_gesture", "test", directory=tmp_path, steps=2, downsample=4)
    assert data.labels.tolist() == [10, 4] and data.num_classes == 11 and data.inputs.shape == (2, 2, 32, 32, 2)
    assert data.inputs[0, 0, 0, 31, 1] == 1 and data.inputs[0, 1, 31, 0, 0] == 1 and data.inputs[1, 0, 16, 16, 1] == 1
    from snnjax.train import Config, resolve

    assert resolve(Config(dataset="dvs_gesture")).data_options == {"downsample": 4}  # recorded with the run
    assert resolve(Config(dataset="dvs_gesture", data_options={"downsample": 2})).data_options == {"downsample": 2}


def _aedat4(path, events):
    """An uncompressed AEDAT 4 file: magic, an IOHeader flatbuffer (compression 0, no data table), one event packet."""
    header = struct.pack("<I", 12) + struct.pack("<HHHH", 8, 16, 4, 8) + struct.pack("<iiq", 8, 0, -1)
    records = np.zeros(len(events), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])
    for i, (x, y, p, t) in enumerate(events):
        records[i] = (t, x, y, p, b"\0\0\0")
    body = b"EVTS" + struct.pack("<HHH", 6, 8, 4) + b"\0\0"  # identifier at 8, vtable at 12, table at 20
    body += struct.pack("<iI", 8, 4) + struct.pack("<I", len(events)) + records.tobytes()  # vector at 28
    payload = struct.pack("<I", 16) + body  # the root table at 4 + 16
    payload = struct.pack("<I", len(payload)) + payload  # size prefix
    data = b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header + struct.pack("<II", 0, len(payload)) + payload
    path.write_bytes(data)


def test_cifar10_dvs_aedat4_files_load_split_per_class(tmp_path):
    for cls in ("airplane", "truck"):
        (tmp_path / "CIFAR10DVS" / cls).mkdir(parents=True)
        for i in range(10):
            _aedat4(tmp_path / "CIFAR10DVS" / cls / f"{cls}_{i}.aedat4", [(3, 4, 1, 1_000 + i), (120, 90, 0, 5_000)])
    e = read_aedat4(tmp_path / "CIFAR10DVS" / "truck" / "truck_2.aedat4")
    assert (e.x.tolist(), e.y.tolist(), e.p.tolist(), e.t.tolist()) == ([3, 120], [4, 90], [1, 0], [1002, 5000])
    train, test = (load("cifar10_dvs", s, directory=tmp_path, steps=2, cache=False) for s in ("train", "test"))
    assert train.labels.tolist() == [0] * 9 + [9] * 9 and test.labels.tolist() == [0, 9]  # 90 % of each class
    assert test.inputs[0, 0, 4, 3, 1] == 1 and test.inputs[0, 1, 90, 120, 0] == 1
    (tmp_path / "bad.aedat4").write_bytes(b"not an aedat file")
    with pytest.raises(ValueError, match="not an AEDAT 4 file"):
        read_aedat4(tmp_path / "bad.aedat4")


def test_ssc_and_shd_drop_nan_spike_times(tmp_path):
    h5py = pytest.importorskip("h5py")
    for name, classes in (("shd", 20), ("ssc", 35)):
        for split in ("train", "test"):
            with h5py.File(tmp_path / f"{name}_{split}.h5", "w") as f:
                kind = h5py.vlen_dtype(np.float32)
                times = f.create_dataset("spikes/times", (2,), dtype=kind)
                units = f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.uint16))
                times[0], units[0] = np.array([0.1, np.nan, 0.5], np.float32), np.array([3, 4, 5], np.uint16)
                times[1], units[1] = np.array([np.nan], np.float32), np.array([1], np.uint16)
                f["labels"] = np.array([classes - 1, 0])
        data = load_shd("train", tmp_path, steps=10, max_time=1.0, name=name)
        assert data.spikes.sum() == 2 and data.spikes[0, 1, 3] == 1 and data.spikes[0, 5, 5] == 1
        assert data.spikes[1].sum() == 0 and data.labels.tolist() == [classes - 1, 0]
        assert load(name, "test", directory=tmp_path, steps=10).num_classes == classes


def test_nmnist_trains_a_convolutional_snn_through_the_command(tmp_path):
    """Class 0 moves on the left half, class 1 on the right: the default conv SNN learns it from the frames."""
    rng = np.random.default_rng(0)
    for split, count in (("Train", 96), ("Test", 16)):
        for i in range(count):
            label = i % 2
            folder = tmp_path / "NMNIST" / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            x = rng.integers(0, 17, 200) + 17 * label
            events = [
                (int(a), int(b), int(p), int(t))
                for a, b, p, t in zip(
                    x, rng.integers(0, 34, 200), rng.integers(0, 2, 200), np.sort(rng.integers(0, 300_000, 200))
                )
            ]
            (folder / f"{i:05d}.bin").write_bytes(_nmnist_bytes(events))
    from snnjax.train import Config, resolve

    c = resolve(Config(dataset="nmnist"))
    assert (c.model, c.steps, c.encoding) == ("conv", 10, "none")
    out = tmp_path / "run"
    argv = f"train --dataset nmnist --data-dir {tmp_path} --hidden 4 8 --steps 4 --epochs 4 --batch-size 16 --lr 0.01"
    assert cli.main([*argv.split(), "--no-progress", "--no-plots", "--no-checkpoints", "--out", str(out)]) == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(h["test_accuracy"] for h in history) >= 0.8, history  # chance is 0.5
    out = tmp_path / "dense"
    argv = f"train --dataset nmnist --data-dir {tmp_path} --model snn --hidden 16 --steps 4 --epochs 1 --batch-size 8"
    assert cli.main([*argv.split(), "--no-progress", "--no-plots", "--no-checkpoints", "--out", str(out)]) == 0
    # the exact-time network keeps the set's own 10 frames (its 200 steps are its grid's) and dense hidden sizes
    from snnjax.train import loop

    c = resolve(Config(dataset="nmnist", rule="sfdfa", data_dir=str(tmp_path)))
    assert (c.model, c.steps, c.hidden, c.lr) == ("spike-time", 200, (400,), 1e-2)
    assert loop._load(c, "test").inputs.shape == (16, 10, 34, 34, 2)
    # frames from a .npz file: their own T, a convolutional SNN by default
    frames = np.asarray(loop._load(c, "train").inputs[:, :4])
    labels = np.arange(len(frames)) % 2
    np.savez(tmp_path / "mine.npz", x_train=frames, y_train=labels, x_test=frames, y_test=labels, kind="frames")
    c = resolve(Config(dataset=str(tmp_path / "mine.npz")))
    assert (c.model, c.steps, c.encoding) == ("conv", 4, "none")
    argv = f"train --dataset {tmp_path / 'mine.npz'} --hidden 4 8 --epochs 1 --batch-size 8 --out {tmp_path / 'npz'}"
    assert cli.main([*argv.split(), "--no-progress", "--no-plots", "--no-checkpoints"]) == 0


def test_tonic_reads_the_same_nmnist_events(tmp_path):
    io = pytest.importorskip("tonic.io", reason="tonic (the events extra) is not installed")
    path = tmp_path / "00001.bin"
    path.write_bytes(_nmnist_bytes([(1, 2, 1, 0), (33, 0, 0, 100), (5, 5, 1, 70_000)]))
    theirs = io.read_mnist_file(str(path), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    ours = read_nmnist(path)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(getattr(ours, field), theirs[field])


def test_download_runs_tonics_download_into_the_data_folder(tmp_path, monkeypatch, capsys):
    """No internet here: a stand-in for tonic records what `snnjax download` asks of it."""
    import sys
    import types

    calls = []

    def dataset(name):
        return lambda save_to, **kw: calls.append((name, save_to, kw))

    fake = types.ModuleType("tonic")
    fake.datasets = types.SimpleNamespace(**{n: dataset(n) for n in ("NMNIST", "DVSGesture", "CIFAR10DVS")})
    monkeypatch.setitem(sys.modules, "tonic", fake)
    assert cli.main(["download", "nmnist", "--directory", str(tmp_path)]) == 0
    assert cli.main(["download", "cifar10_dvs", "--directory", str(tmp_path)]) == 0
    assert calls == [
        ("NMNIST", str(tmp_path), {"train": True}),
        ("NMNIST", str(tmp_path), {"train": False}),
        ("CIFAR10DVS", str(tmp_path), {}),
    ]
    assert f"nmnist is in {tmp_path} (pass it as --data-dir)" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "tonic", None)  # not installed
    with pytest.raises(SystemExit) as exit_:
        cli.main(["download", "dvs_gesture", "--directory", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "pip install 'snnjax[events]'" in err and err.count("\n") == 1, err
