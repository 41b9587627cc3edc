r"""Losses and metrics on time-major network outputs ``[T, B, C]`` and integer labels ``[B]``.

================================  =============================================================
:func:`rate_cross_entropy`        softmax cross-entropy of the spike rates :math:`\frac1T\sum_t z_t`
:func:`membrane_cross_entropy`    softmax cross-entropy of the summed membrane :math:`\sum_t v_t`
:func:`max_membrane_cross_entropy` softmax cross-entropy of :math:`\max_t v_t`
:func:`spike_count_mse`           :math:`\frac12\sum_k (n_k - n^*_k)^2` with target counts
:func:`firing_rate_regularizer`   penalty on rates outside a band
:func:`accuracy`                  argmax of rates / counts / logits against labels
================================  =============================================================

Each returns a scalar averaged over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

__all__ = [
    "rate_cross_entropy",
    "membrane_cross_entropy",
    "max_membrane_cross_entropy",
    "spike_count_mse",
    "firing_rate_regularizer",
    "accuracy",
]


def _check(outputs: ArrayLike, labels: ArrayLike, name: str) -> tuple[jax.Array, jax.Array]:
    outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
    if outputs.ndim != 3:
        raise ValueError(f"{name}: outputs must be time-major [T, B, C], got shape {outputs.shape}.")
    if labels.shape != outputs.shape[1:2]:
        raise ValueError(f"{name}: labels must be [B] = {outputs.shape[1:2]} integers, got shape {labels.shape}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{name}: labels must be integers, got dtype {labels.dtype}.")
    return outputs, labels


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def rate_cross_entropy(spikes: ArrayLike, labels: ArrayLike, scale: float = 1.0) -> jax.Array:
    r"""Cross-entropy with logits :math:`\text{scale}\cdot\frac1T \sum_t z_{t,b,c}`.

    Args:
      spikes: output spikes ``[T, B, C]``.
      labels: class indices ``[B]``.
      scale: multiplies the rates (a softmax temperature); rates lie in [0, 1].

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import losses
      >>> z = jnp.zeros((4, 1, 2)).at[:, 0, 1].set(1.0)
      >>> round(float(losses.rate_cross_entropy(z, jnp.array([1]), scale=10.0)), 5)
      5e-05
    """
    spikes, labels = _check(spikes, labels, "rate_cross_entropy")
    return _cross_entropy(scale * spikes.mean(axis=0), labels)


def membrane_cross_entropy(v: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Cross-entropy with logits :math:`\sum_t v_{t,b,c}` (summed readout membrane).

    Args:
      v: readout membrane ``[T, B, C]``; ``labels``: class indices ``[B]``.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> round(float(snnjax.losses.membrane_cross_entropy(jnp.zeros((5, 2, 3)), jnp.array([0, 2]))), 4)  # log 3
      1.0986
    """
    v, labels = _check(v, labels, "membrane_cross_entropy")
    return _cross_entropy(v.sum(axis=0), labels)


def max_membrane_cross_entropy(v: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Cross-entropy with logits :math:`\max_t v_{t,b,c}` (Cramer et al. 2020's max-over-time readout).

    Args:
      v: readout membrane ``[T, B, C]``.
      labels: class indices ``[B]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import losses
      >>> v = jnp.zeros((5, 2, 3)).at[2, 0, 1].set(4.0).at[3, 1, 2].set(4.0)
      >>> round(float(losses.max_membrane_cross_entropy(v, jnp.array([1, 2]))), 4)
      0.036
    """
    v, labels = _check(v, labels, "max_membrane_cross_entropy")
    return _cross_entropy(v.max(axis=0), labels)


def spike_count_mse(
    spikes: ArrayLike, labels: ArrayLike, target_true: float = 15.0, target_false: float = 3.0
) -> jax.Array:
    r"""Spike-count loss :math:`\frac12 \sum_k (n_k - n^*_k)^2`, averaged over the batch.

    :math:`n_k = \sum_t z_{t,k}` and :math:`n^*_k` is ``target_true`` for the label, else
    ``target_false`` (Bacho & Chu's SFDFA uses 15 and 3).

    Args:
      spikes: output spikes ``[T, B, C]``.
      labels: class indices ``[B]``.
      target_true: target count of the correct class.
      target_false: target count of the others.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import losses
      >>> z = jnp.zeros((20, 1, 2)).at[:15, 0, 0].set(1.0).at[:3, 0, 1].set(1.0)
      >>> float(losses.spike_count_mse(z, jnp.array([0])))
      0.0
    """
    spikes, labels = _check(spikes, labels, "spike_count_mse")
    counts = spikes.sum(axis=0)
    target = jnp.where(jax.nn.one_hot(labels, counts.shape[-1], dtype=bool), target_true, target_false).astype(
        counts.dtype
    )
    return 0.5 * jnp.sum((counts - target) ** 2, axis=-1).mean()


def firing_rate_regularizer(
    spikes: ArrayLike, lower: float = 0.0, upper: float = 1.0, *, per_neuron: bool = True
) -> jax.Array:
    r"""Squared penalty on firing rates outside ``[lower, upper]`` (spikes per step).

    .. math::

        R = \operatorname{mean}\big(\operatorname{relu}(\ell - r)^2 + \operatorname{relu}(r - u)^2\big)

    with :math:`r` each neuron's rate averaged over time and batch (``per_neuron=True``, the
    Zenke & Vogels 2021 lower bound) or each sample's population rate (``per_neuron=False``).

    Args:
      spikes: hidden spikes ``[T, B, N]``.
      lower: the rate below which silence is penalised.
      upper: the rate above which activity is penalised.
      per_neuron: the rate per neuron (over time and batch) or per sample (over time and neurons).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import losses
      >>> spikes = jnp.zeros((10, 2, 3)).at[:, :, 0].set(1.0)  # neuron 0 fires every step
      >>> round(float(losses.firing_rate_regularizer(spikes, lower=0.0, upper=0.5)), 4)
      0.0833
    """
    z = jnp.asarray(spikes)
    if z.ndim < 3:
        raise ValueError(f"firing_rate_regularizer: spikes must be [T, B, N, ...], got shape {z.shape}.")
    if not lower <= upper:
        raise ValueError(f"firing_rate_regularizer: need lower <= upper, got {lower} > {upper}.")
    r = z.mean(axis=(0, 1)) if per_neuron else z.mean(axis=tuple(i for i in range(z.ndim) if i != 1))
    return jnp.mean(jax.nn.relu(lower - r) ** 2 + jax.nn.relu(r - upper) ** 2)


def accuracy(outputs: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Fraction of samples whose largest output is the label.

    Args:
      outputs: ``[T, B, C]`` (summed over time first: spike counts or summed membrane) or
        ``[B, C]`` scores.
      labels: class indices ``[B]``.

    Returns:
      A float32 scalar in ``[0, 1]``. Ties go to the lowest class index.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import losses
      >>> float(losses.accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([1, 1])))
      0.5
    """
    outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
    if outputs.ndim == 3:
        outputs = outputs.sum(axis=0)
    if outputs.ndim != 2 or labels.shape != outputs.shape[:1]:
        raise ValueError(
            f"accuracy: need outputs [T, B, C] or [B, C] and labels [B], got {outputs.shape} and {labels.shape}."
        )
    return jnp.mean(jnp.argmax(outputs, axis=-1) == labels, dtype=jnp.float32)
