r"""Several layers in one time loop: dense synapses and neurons stepped together as one neuron.

.. math::

    h^{(0)}_t = x_t, \qquad (s^{(l)}_t, h^{(l)}_t) = \text{step}_l(s^{(l)}_{t-1}, h^{(l-1)}_t)
    \ \text{(a neuron)} \quad\text{or}\quad h^{(l)}_t = f_l(h^{(l-1)}_t)\ \text{(a function)},
    \qquad y_t = h^{(L)}_t

Running layers one after the other (``run(layer_1, xs)``, then the projection of the whole
sequence, then ``run(layer_2, ...)``) loops over time once per layer and stores every layer's
output sequence ``[T, B, N]``. A chain steps all of them in one loop and stores only the last
layer's output, which makes inference faster (``docs/benchmarks.md`` has the measurements).
A chain is also the pure *stepped network* of the online learning rules
(:func:`snnjax.rules.per_step_loss`), which read its :attr:`~snnjax.Neuron.layers`: dense
synapses (:func:`dense`) between neuron layers. For reverse-mode training of recurrent layers,
:func:`snnjax.run_bptt` layer by layer is faster: it needs the layer's recurrent weights, and a
chain does not expose its layers' (``recurrence`` is ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from snnjax.neurons.neuron import Neuron

__all__ = ["Dense", "chain", "dense"]

Layer = Neuron | Callable[[jax.Array], jax.Array]


class Dense(NamedTuple):
    r"""A dense synapse layer for one time step, :math:`x_t W + b` (a chain's function layer).

    Attributes:
      kernel: :math:`W`, ``[N_in, N]``.
      bias: :math:`b`, ``[N]``, or ``None``.
    """

    kernel: jax.Array
    bias: jax.Array | None = None

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x @ kernel + bias`` for ``x`` of shape ``[..., N_in]``; returns ``[..., N]``."""
        y = x @ self.kernel.astype(x.dtype)
        if self.bias is None:
            return y
        return y + self.bias.astype(x.dtype).reshape((1,) * (y.ndim - 1) + (-1,))


def dense(kernel: ArrayLike, bias: ArrayLike | None = None) -> Dense:
    r"""A dense synapse layer :math:`x_t W + b`, checked.

    Args:
      kernel: :math:`W`, ``[N_in, N]``, floating point (may be a traced parameter).
      bias: :math:`b`, ``[N]``, or ``None``.

    Returns:
      A :class:`Dense`, a function of one time step's array ``[B, N_in] -> [B, N]``.

    Raises:
      ValueError: for a kernel that is not 2-D or floating point, or a bias of the wrong shape.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> snnjax.dense(jnp.ones((3, 2)), jnp.array([0.0, 1.0]))(jnp.ones((1, 3)))
      Array([[3., 4.]], dtype=float32)
    """
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2 or not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise ValueError(
            f"dense: kernel must be a floating-point [N_in, N] matrix, got shape {kernel.shape} and dtype "
            f"{kernel.dtype}."
        )
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != kernel.shape[1:]:
            raise ValueError(f"dense: bias must have shape [N] = {kernel.shape[1:]}, got {bias.shape}.")
    return Dense(kernel, bias)


def chain(*layers: Layer) -> Neuron:
    r"""Neurons and per-step functions composed into one neuron, stepped together.

    Args:
      *layers: in order, each a :class:`snnjax.Neuron` (its step is applied, its state carried)
        or a function of one time step's array ``[B, ...] -> [B, ...]`` applied at every step,
        such as a dense synapse :func:`dense` or ``lambda z: z @ w``. Parameters may be traced values.

    Returns:
      A :class:`snnjax.Neuron` whose state is the tuple of its neurons' states, in order, whose
      output at each step is the last layer's, and whose ``layers`` are ``layers``.
      ``init(shape)`` takes the first layer's input shape ``[B, ...]``; each later neuron's state
      has the shape of its input there. Run it with :func:`snnjax.run` (forward and reverse
      mode) or :func:`snnjax.run_bptt`.

    Raises:
      ValueError: if no layer is given.
      TypeError: if a layer is neither a :class:`snnjax.Neuron` nor callable.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> net = snnjax.chain(snnjax.lif(0.5), snnjax.dense(jnp.full((3, 2), 0.5)), snnjax.leaky_integrator(0.5))
      >>> _, v = snnjax.run(net, jnp.full((4, 1, 3), 0.6))
      >>> v[:, 0, 0]  # the LIF spikes at step 3 (see snnjax.run): 1.5 into the readout
      Array([0.  , 0.  , 1.5 , 0.75], dtype=float32)
    """
    if not layers:
        raise ValueError("chain: give at least one layer (a snnjax.Neuron or a function of one time step).")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Neuron) and not callable(layer):
            raise TypeError(
                f"chain: layer {i} must be a snnjax.Neuron or a function of one time step's array, "
                f"got {type(layer).__name__}."
            )

    def init(shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> tuple:
        x, states = jax.ShapeDtypeStruct(tuple(shape), dtype), []
        for layer in layers:  # each layer's input shape, from the shapes of the layers before it
            if isinstance(layer, Neuron):
                states.append(layer.init(x.shape, x.dtype))
                x = jax.eval_shape(layer.step, states[-1], x)[1]
            else:
                x = jax.eval_shape(layer, x)
        return tuple(states)

    def step(state: tuple, x: jax.Array) -> tuple[tuple, jax.Array]:
        states, new = iter(state), []  # the neurons' states, in the order of the neurons
        for layer in layers:
            if isinstance(layer, Neuron):
                s, x = layer.step(next(states), x)
                new.append(s)
            else:
                x = layer(x)
        return tuple(new), x

    return Neuron(init, step, layers=tuple(layers))
