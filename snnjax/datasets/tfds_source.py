"""Image sets through tensorflow-datasets, read as NumPy arrays without TensorFlow where possible.

Prepared data in tfds's ``array_record`` format is read with ``tfds.data_source`` (no
TensorFlow needed); data prepared in the older ``tfrecord`` format is read with ``tfds.load``,
which needs TensorFlow. Nothing is downloaded unless ``download=True``: a missing set raises
at once with the ways to get it, so an offline machine never waits on the network.
"""

from __future__ import annotations

import os

import numpy as np

from snnjax.datasets.idx import ImageData

__all__ = ["TFDS_NAMES", "load_tfds"]

TFDS_NAMES = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "kmnist": "kmnist",
    "emnist": "emnist/balanced",
    "cifar10": "cifar10",
}


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "tensorflow-datasets is not installed: pip install 'snnjax[datasets]', or use local IDX files."
        ) from error
    return tfds


def _as_arrays(source) -> ImageData:
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(e["image"]) for e in examples]).astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]  # grayscale [N, H, W], like the IDX reader
    labels = np.asarray([e["label"] for e in examples], np.int32)
    return ImageData(images, labels)


def load_tfds(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None, *, download: bool = False
) -> ImageData:
    """Load ``split`` of an image set through tensorflow-datasets.

    Args:
      name: one of ``TFDS_NAMES`` (``emnist`` is tfds's ``emnist/balanced``, 47 classes) or any
        tfds name with ``image`` and ``label`` features.
      split: a tfds split, e.g. ``"train"``, ``"test"`` or ``"train[:10%]"``.
      data_dir: tfds's data folder (default: tfds's own, ``~/tensorflow_datasets``).
      download: download and prepare the set if it is missing (needs internet).

    Returns:
      :class:`ImageData`: uint8 images ``[N, H, W]`` (grayscale) or ``[N, H, W, C]``, int32 labels.

    Raises:
      FileNotFoundError: if the set is not prepared and ``download`` is false.

    Examples:
      >>> from snnjax.datasets import load_tfds
      >>> data = load_tfds('cifar10', 'test')  # doctest: +SKIP
      >>> data.images.shape  # doctest: +SKIP
    """
    tfds = _import_tfds()
    tfds_name = TFDS_NAMES.get(name, name)
    try:
        source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=download)
    except NotImplementedError:
        # Prepared as tfrecord: readable through tf.data only.
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            raise FileNotFoundError(
                f"{name}: tensorflow-datasets has no array_record copy in {data_dir or 'its data folder'} and "
                "TensorFlow is not installed; "
                f"run `snnjax download {name}` on a machine with internet, or use local IDX files (SNNJAX_DATA)."
            ) from None
        if not download and not tfds.builder(tfds_name, data_dir=data_dir).is_prepared():
            raise FileNotFoundError(
                f"{name}: not prepared in tensorflow-datasets' {data_dir or 'data folder'}; run `snnjax download "
                f"{name}` on a machine with internet."
            ) from None
        arrays = tfds.as_numpy(tfds.load(tfds_name, split=split, data_dir=data_dir, batch_size=-1, download=download))
        images = np.asarray(arrays["image"], np.uint8)
        return ImageData(images[..., 0] if images.shape[-1] == 1 else images, np.asarray(arrays["label"], np.int32))
    except (AssertionError, FileNotFoundError, KeyError) as error:
        raise FileNotFoundError(
            f"{name}: tensorflow-datasets could not find it ({error}); run `snnjax download {name}` on a machine with "
            "internet."
        ) from None
    return _as_arrays(source)
