r"""Spiking Heidelberg Digits and Spiking Speech Commands (Cramer et al. 2020) from their HDF5 files, binned.

Each file (``shd_train.h5``, ``shd_test.h5``) holds, per sample, spike times in seconds
(``spikes/times``) and the channel of each spike (``spikes/units``, 700 cochlea channels),
and the class (``labels``, 20 spoken digits in English and German). :func:`load_shd` bins
spike ``k`` of sample ``n`` into the raster

.. math::

    R[n, t, c] = \#\{k : \lfloor t_k\, T / t_{\max} \rfloor = t,\ u_k = c\}, \qquad t_k < t_{\max},

clipped to one spike per bin when ``binary``. A spike time that is not finite (NaN) is
dropped with its channel (tonic's reader casts NaN to the most negative integer and keeps it).
SSC (``ssc_train.h5``, ``ssc_test.h5``; 35 spoken commands) has the same format: ``name="ssc"``.
Files are found in ``directory``, else in ``$SNNJAX_DATA/<name>``; :func:`download_shd` fetches
them (gzip) from the Zenke lab's server on a machine with internet and checks their MD5 sums.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

from snnjax.datasets.checks import check_labels
from snnjax.datasets.dataset import data_folder

__all__ = ["HSD_CLASSES", "SHD_CHANNELS", "SHD_CLASSES", "SHD_URL", "SpikeData", "download_shd", "load_shd"]

SHD_URL = "https://zenkelab.org/datasets"
SHD_CHANNELS = 700
SHD_CLASSES = 20
# The Heidelberg spiking sets: their number of classes.
HSD_CLASSES = {"shd": SHD_CLASSES, "ssc": 35}


class SpikeData(NamedTuple):
    """Spike rasters and labels.

    Attributes:
      spikes: ``[N, T, channels]`` uint8 spike counts per bin (0 or 1 when binary).
      labels: ``[N]`` int32.
    """

    spikes: np.ndarray
    labels: np.ndarray


def bin_spikes(
    times: list[np.ndarray], units: list[np.ndarray], steps: int, max_time: float, channels: int, binary: bool = True
) -> np.ndarray:
    """Bin per-sample spike events into a ``[N, steps, channels]`` uint8 raster (see the module docstring).

    Examples:
      >>> import numpy as np
      >>> from snnjax.datasets import bin_spikes
      >>> r = bin_spikes([np.array([0.0, 0.25, 0.9])], [np.array([0, 1, 1])], steps=4, max_time=1.0, channels=2)
      >>> r[0].T.tolist()
      [[1, 0, 0, 0], [0, 1, 0, 1]]
    """
    raster = np.zeros((len(times), steps, channels), np.uint8)
    for n, (t, u) in enumerate(zip(times, units)):
        t, u = np.asarray(t, np.float64), np.asarray(u, np.int64)
        keep = (t >= 0) & (t < max_time) & (u >= 0) & (u < channels)  # NaN times fail both: dropped
        bins = np.floor(t[keep] * steps / max_time).astype(np.int64)
        if binary:
            raster[n, bins, u[keep]] = 1
        else:
            counts = np.zeros((steps, channels), np.int64)
            np.add.at(counts, (bins, u[keep]), 1)
            raster[n] = np.minimum(counts, 255)
    return raster


def load_shd(
    split: str = "train",
    directory: str | os.PathLike | None = None,
    *,
    steps: int = 100,
    max_time: float = 1.4,
    binary: bool = True,
    channels: int = SHD_CHANNELS,
    name: str = "shd",
) -> SpikeData:
    r"""Load a split of SHD (or SSC) as spike rasters ``[N, steps, channels]``.

    Args:
      split: ``"train"`` or ``"test"``.
      directory: the folder holding ``shd_<split>.h5`` (default ``$SNNJAX_DATA/shd``, else
        ``~/.cache/snnjax/shd``).
      steps: time bins T over ``[0, max_time)``.
      max_time: seconds covered; later spikes are dropped (1.4 s covers almost all digits).
      binary: clip each bin to one spike.
      channels: input channels (700 for SHD and SSC).
      name: ``"shd"`` or ``"ssc"`` (files ``<name>_<split>.h5``).

    Returns:
      :class:`SpikeData`.

    Raises:
      FileNotFoundError: naming the folder and how to download the files.
      ValueError: for a bad split or size.

    Examples:
      >>> from snnjax.datasets import load_shd
      >>> data = load_shd('test', steps=100)  # doctest: +SKIP
      >>> data.spikes.shape  # doctest: +SKIP
    """
    if name not in HSD_CLASSES:
        raise ValueError(f"load_shd: name must be one of {', '.join(HSD_CLASSES)}, got {name!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}.")
    if steps < 1 or max_time <= 0 or channels < 1:
        raise ValueError(
            f"{name}: need steps >= 1, max_time > 0 and channels >= 1, got {steps}, {max_time}, {channels}."
        )
    path = data_folder(directory, name) / f"{name}_{split}.h5"
    if not path.is_file():
        raise FileNotFoundError(
            f"{name}: no {path}. Download it on a machine with internet with `snnjax download {name} --directory "
            f"{path.parent}` "
            f"(or from {SHD_URL}/{name}_{split}.h5.gz, then gunzip), or pass directory=/ set SNNJAX_DATA."
        )
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("shd needs h5py: pip install 'snnjax[datasets]'.") from error
    with h5py.File(path, "r") as f:
        times = list(f["spikes"]["times"][:])
        units = list(f["spikes"]["units"][:])
        labels = np.asarray(f["labels"][:])
    check_labels(labels, HSD_CLASSES[name], str(path))
    labels = labels.astype(np.int32)
    return SpikeData(bin_spikes(times, units, steps, max_time, channels, binary), labels)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_shd(
    directory: str | os.PathLike | None = None,
    splits: tuple[str, ...] = ("train", "test"),
    *,
    timeout: float = 60.0,
    base_url: str = SHD_URL,
    name: str = "shd",
) -> Path:
    """Download and unpack ``<name>_<split>.h5`` for each split (SHD, or SSC with ``name="ssc"``), checking MD5 sums.

    Args:
      directory: where to put the files (default as in :func:`load_shd`).
      splits: which splits.
      timeout: seconds before a stalled connection fails (never a hang).
      base_url: the server folder holding ``shd_<split>.h5.gz`` and ``md5sums.txt``.

    Returns:
      The folder holding the files.

    Raises:
      OSError: if the server cannot be reached, with the URL to fetch by hand.
      ValueError: if a download's MD5 sum does not match.

    Examples:
      >>> from snnjax.datasets import download_shd
      >>> folder = download_shd('shd-data', splits=('test',))  # doctest: +SKIP
    """
    if name not in HSD_CLASSES:
        raise ValueError(f"download_shd: name must be one of {', '.join(HSD_CLASSES)}, got {name!r}.")
    folder = data_folder(directory, name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(f"{base_url}/md5sums.txt", timeout=timeout) as response:
            sums = dict(reversed(line.split()[:2]) for line in response.read().decode().splitlines() if line.strip())
        for split in splits:
            file = f"{name}_{split}.h5.gz"
            archive = folder / file
            with urllib.request.urlopen(f"{base_url}/{file}", timeout=timeout) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
            if file in sums and _md5(archive) != sums[file]:
                archive.unlink()
                raise ValueError(f"{name}: {file} failed its MD5 check; download it again.")
            partial = folder / f"{name}_{split}.h5.partial"
            with gzip.open(archive, "rb") as src, open(partial, "wb") as out:
                shutil.copyfileobj(src, out)
            partial.replace(folder / f"{name}_{split}.h5")  # atomic: a killed download leaves no half file
            archive.unlink()
    except OSError as error:
        raise OSError(
            f"{name}: could not download from {base_url} ({error}); fetch the .h5.gz files by hand into {folder} and "
            "gunzip them."
        ) from error
    return folder
