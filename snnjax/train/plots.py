"""PNG plots of a run: training curves, a spike raster of one sample, firing rates per layer.

matplotlib is optional (``pip install 'snnjax[plots]'``); :func:`write_plots` says so in one
line and writes nothing without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["firing_rates", "spike_raster", "training_curves", "write_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Sequence[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train and test."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, what in zip(axes, ("loss", "accuracy")):
        for split in ("train", "test"):
            ax.plot(epochs, [h[f"{split}_{what}"] for h in history], marker="o", label=split)
        ax.set(xlabel="epoch", ylabel=what)
        ax.grid(alpha=0.3)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def spike_raster(inputs: np.ndarray, layers: Sequence[np.ndarray], path: Path, label: int | None = None) -> None:
    """One sample's input ``[T, D]`` and each layer's spikes ``[T, N]``; the last layer is the readout membrane."""
    plt = _pyplot()
    panels = [("input", inputs), *((f"hidden {i + 1}", s) for i, s in enumerate(layers[:-1]))]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 1.8 * (len(panels) + 1)), sharex=True)
    for ax, (name, spikes) in zip(axes, panels):
        t, n = np.nonzero(np.asarray(spikes) > 0)
        ax.scatter(t, n, s=1.5, c="k", marker="|")
        ax.set(ylabel=f"{name}\nunit", ylim=(-0.5, spikes.shape[1] - 0.5))
    axes[-1].plot(np.asarray(layers[-1]))
    axes[-1].set(xlabel="time step", ylabel="readout\nmembrane")
    if label is not None:
        axes[0].set_title(f"one test sample (label {label})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def firing_rates(layers: Sequence[np.ndarray], path: Path) -> None:
    """Histogram per hidden layer of each neuron's mean spikes per step over a batch ``[T, B, N]``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(3.5 * len(layers), 3), squeeze=False)
    for i, (ax, spikes) in enumerate(zip(axes[0], layers)):
        rates = np.asarray(spikes).mean(axis=(0, 1))
        ax.hist(rates, bins=30, range=(0.0, max(float(rates.max()), 1e-3)))
        ax.set(
            title=f"hidden {i + 1}: mean {rates.mean():.3f}, silent {np.mean(rates == 0):.0%}",
            xlabel="spikes per step",
            ylabel="neurons",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(
    out: Path,
    history: Sequence[dict],
    sample: np.ndarray | None,
    layers: Sequence[np.ndarray] | None,
    label: int | None = None,
) -> list[Path]:
    """Write ``curves.png`` and, for spiking models, ``raster.png`` and ``rates.png`` into ``out``.

    Args:
      out: the run's folder.
      history: the per-epoch metrics.
      sample: one sample's network input ``[T, D]`` (``None`` for non-spiking models).
      layers: each neuron layer's output over a test batch ``[T, B, N]``, readout last.
      label: the sample's label, for the title.

    Returns:
      The files written (none without matplotlib).
    """
    try:
        _pyplot()
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install 'snnjax[plots]').")
        return []
    written = [out / "curves.png"]
    training_curves(history, written[0])
    if sample is not None and layers is not None:
        spike_raster(sample, [np.asarray(s)[:, 0] for s in layers], out / "raster.png", label)
        written.append(out / "raster.png")
        if len(layers) > 1:
            firing_rates(layers[:-1], out / "rates.png")
            written.append(out / "rates.png")
    return written
