r"""Several layers in one time loop: a chain of neurons and per-step functions is a neuron.

.. math::

    h^{(0)}_t = x_t, \qquad (s^{(l)}_t, h^{(l)}_t) = \text{step}_l(s^{(l)}_{t-1}, h^{(l-1)}_t)
    \ \text{(a neuron)} \quad\text{or}\quad h^{(l)}_t = f_l(h^{(l-1)}_t)\ \text{(a function)},
    \qquad y_t = h^{(L)}_t

Running layers one after the other (``run(layer_1, xs)``, then the projection of the whole
sequence, then ``run(layer_2, ...)``) loops over time once per layer and stores every layer's
output sequence ``[T, B, N]``. A chain steps all of them in one loop and stores only the last
layer's output: on a 2-core CPU the inference of the FGI network (recurrent ALIF, readout
projection and leaky integrator) runs 1.07-1.33x faster than the same layers one by one, at
every T from 28 to 784 in two side-by-side runs (``benchmarks/fgi_table.py``; an earlier run
ranged from 8% slower to 1.23x faster), and 1.15-1.40x faster with ``method="custom_jvp"``
spikes, which do not evaluate the surrogate factor in the forward pass as ``inject`` does (the
spikes are the same). For reverse-mode training of recurrent layers,
:func:`snnjax.run_bptt` layer by layer is faster still: it needs the layer's recurrent weights,
and a chain does not expose its layers' (``recurrence`` is ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from snnjax.neuron import Neuron

__all__ = ["chain"]

Layer = Neuron | Callable[[jax.Array], jax.Array]


def chain(*layers: Layer) -> Neuron:
    r"""Neurons and per-step functions composed into one neuron, stepped together.

    Args:
      *layers: in order, each a :class:`snnjax.Neuron` (its step is applied, its state carried)
        or a function of one time step's array ``[B, ...] -> [B, ...]`` applied at every step,
        such as a projection ``lambda z: z @ w``. Parameters may be traced values.

    Returns:
      A :class:`snnjax.Neuron` whose state is the tuple of its neurons' states, in order, and
      whose output at each step is the last layer's. ``init(shape)`` takes the first layer's
      input shape ``[B, ...]``; each later neuron's state has the shape of its input there.
      Run it with :func:`snnjax.run` (forward and reverse mode) or :func:`snnjax.run_bptt`.

    Raises:
      ValueError: if no layer is given.
      TypeError: if a layer is neither a :class:`snnjax.Neuron` nor callable.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> w = jnp.full((3, 2), 0.5)
      >>> net = snnjax.chain(snnjax.lif(0.5), lambda z: z @ w, snnjax.leaky_integrator(0.5))
      >>> _, v = snnjax.run(net, jnp.full((4, 1, 3), 0.6))
      >>> v[:, 0, 0]  # the LIF spikes at step 3 (see snnjax.run): 1.5 into the readout
      Array([0.  , 0.  , 1.5 , 0.75], dtype=float32)
    """
    if not layers:
        raise ValueError("chain: give at least one layer (a snnjax.Neuron or a function of one time step).")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Neuron) and not callable(layer):
            raise TypeError(
                f"chain: layer {i} must be a snnjax.Neuron or a function of one time step's array, got {type(layer).__name__}."
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

    return Neuron(init, step)
