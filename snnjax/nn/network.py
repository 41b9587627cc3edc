r"""From an NNX model to the pure stepped network that the online rules run.

The online rules (:func:`snnjax.rules.online_dfa`, :func:`snnjax.rules.online_activity_forward_gradient`)
step a whole network in one ``lax.scan`` and read its layers, so they take the loss of a pure
:func:`snnjax.chain` of dense synapses and neurons (:func:`snnjax.rules.per_step_loss`).
:func:`network` builds that chain from an NNX model written as :class:`snnjax.nn.Sequential`
(or any module with a ``layers`` list): every ``nnx.Linear`` becomes :func:`snnjax.dense` of its
kernel and bias, every neuron layer its pure neuron, both built from the parameters they are
called with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from snnjax.neurons.chain import chain, dense
from snnjax.neurons.neuron import Neuron
from snnjax.nn.neurons import NeuronCell

__all__ = ["network"]


def network(model: nnx.Module) -> Callable[[Any], Neuron]:
    """``params -> snnjax.Neuron``: the model's layers as a pure chain, built from ``params``.

    Args:
      model: an NNX module with a ``layers`` list (such as :class:`snnjax.nn.Sequential`) of
        ``nnx.Linear`` and neuron layers. Its ``nnx.Param`` state is what the returned function
        takes; the rest (fixed decays, say) stays as it is now.

    Returns:
      ``network(params)``, a :func:`snnjax.chain` of :func:`snnjax.dense` and neurons.

    Raises:
      ValueError: naming the layer, for a layer that is neither ``nnx.Linear`` nor a neuron
        layer, or a model without ``layers``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> from snnjax import rules
      >>> model = snn.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), snn.LeakyIntegrator(3))
      >>> loss_fn = rules.per_step_loss(snn.network(model), optax.softmax_cross_entropy_with_integer_labels)
      >>> loss, ys = loss_fn(nnx.state(model, nnx.Param), jnp.zeros((4, 1, 2)), jnp.array([0]))
      >>> ys.shape
      (4, 1, 3)
    """
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(
            f"network: the model ({type(model).__name__}) must have a list of layers, as snnjax.nn.Sequential has."
        )
    for i, layer in enumerate(layers):
        if not isinstance(layer, (nnx.Linear, NeuronCell)):
            raise ValueError(
                f"network: layer {i} ({type(layer).__name__}) is neither nnx.Linear nor a neuron layer; "
                "a stepped network is made of dense synapses and neurons."
            )
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)

    def build(params: Any) -> Neuron:
        merged = nnx.merge(graphdef, params, rest)
        pure = []
        for layer in merged.layers:
            if isinstance(layer, nnx.Linear):
                pure.append(dense(layer.kernel[...], None if layer.bias is None else layer.bias[...]))
            else:
                pure.append(layer.neuron())
        return chain(*pure)

    return build
