r"""Event-camera data sets (N-MNIST, DVS Gesture, CIFAR10-DVS) binned into frames, with a cache.

An event-camera recording is a list of events :math:`(x_k, y_k, p_k, t_k)`: a pixel, a
polarity (on/off) and a time in microseconds. :func:`bin_events` turns one into ``T`` frames
of shape ``[H, W, P]`` (channels last, as snnjax's convolutions take them; NIR and tonic write
``[P, H, W]``), the frames spanning the recording from its first event to its last in ``T``
equal bins,

.. math::

    F[b, \lfloor y_k / d \rfloor, \lfloor x_k / d \rfloor, p_k] \mathrel{+}= 1, \qquad
    b = \Big\lfloor \frac{(t_k - t_0)\, T}{t_\text{last} - t_0 + 1} \Big\rfloor,

counted (clipped to 255, ``uint8``) or ``binary`` (clipped to 1), with ``d`` the spatial
down-sampling. Every event lands in a frame. tonic's ``ToFrame(n_time_bins=T)`` differs: its
bin width is the floor of :math:`(t_\text{last} - t_0) / T` microseconds, so it drops the last
event, and the remainder, and gives empty frames for a recording shorter than ``T`` microseconds.

The files are read where ``tonic`` puts them (``snnjax download NAME`` runs tonic's download,
the ``events`` extra): ``DIR/NMNIST/{Train,Test}/<digit>/*.bin``,
``DIR/DVSGesture/ibmGesture{Train,Test}/user<NN>_<light>/<label>.npy`` and
``DIR/CIFAR10DVS/<class>/*.aedat4``, by snnjax's own NumPy readers of those formats (no tonic
needed to train). CIFAR10-DVS has no split of its own: the first 90 % of each class's files
(sorted by name) are the training split, the rest the test split. The binned arrays are cached
in ``DIR/.snnjax-cache/`` by data set, split and binning, so a second run (or epoch) does not
bin again; a cache that cannot be read is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from snnjax.datasets.checks import check_labels
from snnjax.datasets.dataset import data_folder

__all__ = [
    "EVENT_SETS",
    "EventSet",
    "bin_events",
    "download_events",
    "load_events",
    "read_aedat4",
    "read_gesture",
    "read_nmnist",
]


class EventSet(NamedTuple):
    """What snnjax knows of an event-camera data set.

    Attributes:
      folder: its folder under the data directory (tonic's name for it).
      sensor: ``(W, H, P)``: width, height, polarities.
      classes: class names, in label order.
    """

    folder: str
    sensor: tuple[int, int, int]
    classes: tuple[str, ...]


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
EVENT_SETS: dict[str, EventSet] = {
    "nmnist": EventSet("NMNIST", (34, 34, 2), tuple(str(d) for d in range(10))),
    "dvs_gesture": EventSet("DVSGesture", (128, 128, 2), tuple(f"gesture {i}" for i in range(10)) + ("other",)),
    "cifar10_dvs": EventSet("CIFAR10DVS", (128, 128, 2), CIFAR10_CLASSES),
}


class Events(NamedTuple):
    """One recording's events, int64 arrays ``[K]``: columns, x, rows, y, polarity p (0 or 1), time t in µs."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t: np.ndarray


def _events(x, y, p, t) -> Events:
    return Events(*(np.asarray(a, np.int64).ravel() for a in (x, y, p, t)))


def read_nmnist(path: str | os.PathLike) -> Events:
    """The events of an N-MNIST ``.bin`` file (Orchard et al. 2015).

    Five bytes per event: ``x``, ``y``, then polarity in bit 7 of the third byte and a 23-bit
    big-endian time in µs in the rest. An event with ``y = 240`` marks a timer overflow: it is
    dropped and :math:`2^{13}` µs added to every later time (the data set's own MATLAB reader).

    Examples:
      >>> import tempfile
      >>> from pathlib import Path
      >>> from snnjax.datasets.events import read_nmnist
      >>> path = Path(tempfile.mkdtemp()) / "00001.bin"
      >>> _ = path.write_bytes(bytes([3, 4, 0x80, 0x01, 0x02]))  # x 3, y 4, on, t = 258
      >>> e = read_nmnist(path)
      >>> int(e.x[0]), int(e.y[0]), int(e.p[0]), int(e.t[0])
      (3, 4, 1, 258)
    """
    raw = np.fromfile(path, np.uint8)
    if raw.size % 5:
        raise ValueError(f"{path}: an N-MNIST file holds 5 bytes per event; {raw.size} bytes is not a multiple of 5.")
    b = raw.reshape(-1, 5).astype(np.int64)
    x, y, p = b[:, 0], b[:, 1], (b[:, 2] & 128) >> 7
    t = ((b[:, 2] & 127) << 16) | (b[:, 3] << 8) | b[:, 4]
    overflow = y == 240
    t = t + (np.cumsum(overflow) << 13)
    keep = ~overflow
    return _events(x[keep], y[keep], p[keep], t[keep])


def read_gesture(path: str | os.PathLike) -> Events:
    """The events of a DVS Gesture sample as tonic stores it: ``.npy`` ``[K, 4]`` of ``x, y, p, t`` with ``t`` in ms.

    Examples:
      >>> import os, tempfile, numpy as np
      >>> from snnjax.datasets.events import read_gesture
      >>> path = os.path.join(tempfile.mkdtemp(), "3.npy")
      >>> np.save(path, np.array([[5, 6, 1, 2.5]]))
      >>> e = read_gesture(path)
      >>> int(e.x[0]), int(e.y[0]), int(e.p[0]), int(e.t[0])
      (5, 6, 1, 2500)
    """
    data = np.load(path)
    if data.ndim != 2 or data.shape[1] != 4:
        raise ValueError(f"{path}: a DVS Gesture sample is [K, 4] (x, y, p, t), got {list(data.shape)}.")
    return _events(data[:, 0], data[:, 1], data[:, 2] != 0, np.rint(np.asarray(data[:, 3], np.float64) * 1000))


_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])


def _table_field(buffer: bytes, table: int, field: int) -> int | None:
    """The position of field ``field`` of the flatbuffer table at ``table``, or ``None`` if absent."""
    vtable = table - struct.unpack_from("<i", buffer, table)[0]
    size = struct.unpack_from("<H", buffer, vtable)[0]
    if 4 + 2 * field + 2 > size:
        return None
    offset = struct.unpack_from("<H", buffer, vtable + 4 + 2 * field)[0]
    return table + offset if offset else None


def read_aedat4(path: str | os.PathLike) -> Events:
    """The events of an AEDAT 4 file (iniVation's DV format, CIFAR10-DVS as tonic downloads it).

    The file is a magic line, an ``IOHeader`` flatbuffer (its compression and where the data
    ends) and packets ``(stream id, size, bytes)``, each an ``EventPacket`` flatbuffer of 16-byte
    events ``(t int64 µs, x int16, y int16, on bool)``. Packets compressed with LZ4 or Zstandard
    need the ``lz4`` or ``zstandard`` package. As tonic, it reads the event stream of the lowest
    id; packets of other kinds (frames, IMU) are skipped.

    Raises:
      ValueError: naming the file, for one that is not AEDAT 4.
      ImportError: for compressed packets without the package that reads them.
    """
    data = Path(path).read_bytes()
    magic = b"#!AER-DAT4.0\r\n"
    if not data.startswith(magic):
        raise ValueError(f"{path}: not an AEDAT 4 file (no '#!AER-DAT4.0' line).")
    (length,) = struct.unpack_from("<I", data, len(magic))
    header = data[len(magic) + 4 : len(magic) + 4 + length]
    table = struct.unpack_from("<I", header, 0)[0]
    at = _table_field(header, table, 0)
    compression = struct.unpack_from("<i", header, at)[0] if at is not None else 0
    at = _table_field(header, table, 1)
    end = struct.unpack_from("<q", header, at)[0] if at is not None else -1
    end = len(data) if end < 0 else end
    decompress = _decompressor(compression, path)
    position, parts = len(magic) + 4 + length, {}
    while position + 8 <= end:
        stream, size = struct.unpack_from("<II", data, position)
        packet = decompress(data[position + 8 : position + 8 + size])
        position += 8 + size
        if packet[8:12] != b"EVTS":
            continue
        root = 4 + struct.unpack_from("<I", packet, 4)[0]
        at = _table_field(packet, root, 0)
        if at is None:
            continue
        vector = at + struct.unpack_from("<I", packet, at)[0]
        (count,) = struct.unpack_from("<I", packet, vector)
        parts.setdefault(stream, []).append(np.frombuffer(packet, _EVENT, count, vector + 4))
    events = np.concatenate(parts[min(parts)]) if parts else np.zeros(0, _EVENT)
    return _events(events["x"], events["y"], events["on"], events["t"])


def _decompressor(code: int, path: str | os.PathLike):
    if code == 0:
        return lambda raw: raw
    if code in (1, 2):
        try:
            import lz4.frame
        except ImportError as error:
            raise ImportError(f"{path}: LZ4-compressed packets need the lz4 package: pip install lz4.") from error
        return lz4.frame.decompress
    if code in (3, 4):
        try:
            import zstandard
        except ImportError as error:
            raise ImportError(f"{path}: Zstandard-compressed packets need zstandard: pip install zstandard.") from error
        return lambda raw: zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    raise ValueError(f"{path}: unknown AEDAT 4 compression code {code}.")


def bin_events(
    events: Events, sensor: tuple[int, int, int], steps: int, *, binary: bool = False, downsample: int = 1
) -> np.ndarray:
    """One recording's events as ``steps`` frames ``[T, H / d, W / d, P]`` uint8 (module docstring).

    Args:
      events: the recording (:class:`Events`; ``x < W``, ``y < H``, ``p < P``).
      sensor: ``(W, H, P)``.
      steps: ``T``, bins of equal length from the first event to the last.
      binary: clip each bin to 1 (else counts, clipped to 255).
      downsample: ``d``: pixel ``(x, y)`` counts into ``(x // d, y // d)``, frames ``ceil(H / d) x ceil(W / d)``.

    Examples:
      >>> from snnjax.datasets.events import Events, bin_events
      >>> import numpy as np
      >>> e = Events(np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([1, 0, 0]), np.array([100, 150, 199]))
      >>> frames = bin_events(e, (2, 2, 2), steps=2)  # span 100 us: [100, 150) and [150, 200)
      >>> frames.shape, int(frames[0, 0, 0, 1]), int(frames[1, 0, 1, 0]), int(frames[1, 1, 1, 0])
      ((2, 2, 2, 2), 1, 1, 1)
    """
    width, height, polarities = sensor
    frames = np.zeros((steps, -(-height // downsample), -(-width // downsample), polarities), np.int64)
    if events.t.size:
        inside = (events.x >= 0) & (events.x < width) & (events.y >= 0) & (events.y < height)
        inside &= (events.p >= 0) & (events.p < polarities)
        x, y, p, t = (a[inside] for a in events)
        if t.size:
            t0 = t.min()
            bins = (t - t0) * steps // (t.max() - t0 + 1)
            np.add.at(frames, (bins, y // downsample, x // downsample, p), 1)
    return np.minimum(frames, 1 if binary else 255).astype(np.uint8)


def _files(name: str, split: str, root: Path) -> list[tuple[Path, int]]:
    """``(file, label)`` of every sample of a split, in a fixed order."""
    if name == "nmnist":
        base = root / ("Train" if split == "train" else "Test")
        return [(f, int(f.parent.name[-1])) for f in sorted(base.glob("*/*.bin"))]
    if name == "dvs_gesture":
        base = root / ("ibmGestureTrain" if split == "train" else "ibmGestureTest")
        return [(f, int(f.stem)) for f in sorted(base.glob("*/*.npy"))]
    found = []
    for label, cls in enumerate(CIFAR10_CLASSES):
        files = sorted((root / cls).glob("*.aedat4"))
        cut = int(round(0.9 * len(files)))
        found += [(f, label) for f in (files[:cut] if split == "train" else files[cut:])]
    return found


_READERS = {"nmnist": read_nmnist, "dvs_gesture": read_gesture, "cifar10_dvs": read_aedat4}


def load_events(
    name: str,
    split: str = "train",
    directory: str | os.PathLike | None = None,
    *,
    steps: int = 10,
    binary: bool = False,
    downsample: int = 1,
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A split of an event-camera data set as frames ``[N, T, H, W, P]`` uint8 and labels ``[N]`` int32.

    Args:
      name: ``nmnist``, ``dvs_gesture`` or ``cifar10_dvs`` (:data:`EVENT_SETS`).
      split: ``"train"`` or ``"test"``.
      directory: the folder tonic downloaded into (holding ``NMNIST/``, ``DVSGesture/`` or
        ``CIFAR10DVS/``); default ``$SNNJAX_DATA``, else ``~/.cache/snnjax``.
      steps: frames per sample ``T``.
      binary: frames of 0 and 1 (else event counts).
      downsample: the spatial factor ``d``.
      cache: keep the binned arrays in ``directory/.snnjax-cache/`` and read them from there.

    Raises:
      FileNotFoundError: naming the folder and the command that downloads the set.
      ValueError: for a bad option, or a file that cannot be read (naming it).

    Examples:
      >>> from snnjax.datasets.events import load_events
      >>> frames, labels = load_events("nmnist", "test", steps=10)  # doctest: +SKIP
      >>> frames.shape  # doctest: +SKIP
      (10000, 10, 34, 34, 2)
    """
    if name not in EVENT_SETS:
        raise ValueError(f"unknown event data set {name!r}; choose one of {', '.join(EVENT_SETS)}.")
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}.")
    for option, value in (("steps", steps), ("downsample", downsample)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {option} must be a positive integer (a data option), got {value!r}.")
    if not isinstance(binary, (bool, np.bool_)):
        raise ValueError(f"{name}: binary must be true or false (a data option), got {binary!r}.")
    info = EVENT_SETS[name]
    folder = data_folder(directory)
    root = folder / info.folder
    stored = folder / ".snnjax-cache" / f"{name}-{split}-T{steps}-{'binary' if binary else 'count'}-d{downsample}.npz"
    files = _files(name, split, root)
    # which files, and their sizes and times: a cache of other files (a download since completed) is rebuilt
    stamp = hashlib.sha256()
    for f, label in files:
        info_f = f.stat()
        stamp.update(f"{f.relative_to(root)} {label} {info_f.st_size} {info_f.st_mtime_ns}\n".encode())
    fingerprint = np.array(f"v1 {stamp.hexdigest()}")
    if cache and files and stored.is_file():
        try:
            with np.load(stored) as f:
                if str(f["fingerprint"]) == str(fingerprint):
                    return f["frames"], f["labels"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt from the files
    if not files:
        raise FileNotFoundError(
            f"{name}: no {split} files in {root}. Download the set on a machine with internet with `snnjax download "
            f"{name} --directory {folder}` (needs pip install 'snnjax[events]'), or pass --data-dir / set SNNJAX_DATA."
        )
    frames = np.stack([_binned(_READERS[name], f, info.sensor, steps, binary, downsample) for f, _ in files])
    labels = np.array([label for _, label in files], np.int32)
    check_labels(labels, len(info.classes), str(root))
    if cache:
        partial = stored.parent / f"{stored.stem}.partial-{os.getpid()}.npz"
        try:
            stored.parent.mkdir(parents=True, exist_ok=True)
            np.savez(partial, frames=frames, labels=labels, fingerprint=fingerprint)
            partial.replace(stored)  # atomic: an interrupted run leaves no half cache
        except OSError as error:  # a read-only data folder: train without a cache
            warnings.warn(
                f"{name}: cannot cache the frames in {stored.parent} ({error.strerror}); binning each run.",
                stacklevel=2,
            )
            partial.unlink(missing_ok=True)
    return frames, labels


def download_events(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Download an event-camera set with tonic (``pip install 'snnjax[events]'``) into ``directory``.

    Returns:
      The folder to pass as ``directory`` (``--data-dir``) to :func:`load_events`.

    Raises:
      ImportError: without tonic, saying how to install it.
    """
    if name not in EVENT_SETS:
        raise ValueError(f"unknown event data set {name!r}; choose one of {', '.join(EVENT_SETS)}.")
    try:
        import tonic
    except ImportError as error:
        raise ImportError(f"snnjax download {name} uses tonic: pip install 'snnjax[events]'.") from error
    folder = data_folder(directory)
    folder.mkdir(parents=True, exist_ok=True)
    kind = getattr(tonic.datasets, {"nmnist": "NMNIST", "dvs_gesture": "DVSGesture", "cifar10_dvs": "CIFAR10DVS"}[name])
    if name == "cifar10_dvs":  # one set; snnjax splits it
        kind(save_to=str(folder))
    else:
        for train in (True, False):
            kind(save_to=str(folder), train=train)
    return folder


def _binned(reader, path: Path, sensor, steps: int, binary: bool, downsample: int) -> np.ndarray:
    try:
        events = reader(path)
    except ImportError:
        raise
    except Exception as error:  # a damaged file in any format: name it
        raise ValueError(f"{path}: cannot be read ({error}).") from None
    return bin_events(events, sensor, steps, binary=binary, downsample=downsample)
