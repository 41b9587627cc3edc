r"""The networks and rules the training command builds by name.

Every network is a *tapped model* (:mod:`snnjax.rules.activity`): the pre-activation of every
layer passes through ``tap``, so BPTT, weight- and activity-perturbed forward gradients all
train the same network. Spiking networks read out through leaky integrators and classify by
the maximum membrane over time, :math:`\text{logits} = \max_t v_t`, with cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import snnjax
from snnjax import rules
from snnjax.nn import LIF, LeakyIntegrator, Sequential
from snnjax.rules.feedback import Route
from snnjax.rules.protocol import Rule

__all__ = ["MLP", "build_model", "build_rule", "routed_model", "tapped_model"]


class MLP(nnx.Module):
    """A ReLU perceptron ``[B, D] -> [B, classes]`` whose pre-activations can be tapped.

    Args:
      sizes: layer widths, input first, classes last.
      rngs: for the weights.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import MLP
      >>> logits, hidden = MLP((4, 8, 3), rngs=nnx.Rngs(0))(jnp.ones((2, 4)), record=True)
      >>> logits.shape, hidden[0].shape
      ((2, 3), (2, 8))
    """

    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(
        self,
        x: jax.Array,
        *,
        record: bool = False,
        tap: Callable[[jax.Array], jax.Array] | None = None,
        route: Route | None = None,
    ):
        """Logits ``[B, classes]``; with ``record`` also the hidden activations ``[B, N_l]``.

        ``tap`` sees every pre-activation, ``route`` every product, hidden output and the
        output (as in :class:`snnjax.nn.Sequential`).
        """
        tap = tap or (lambda z: z)
        route = route or Route()
        recorded = []
        for i, layer in enumerate(self.layers):
            x = tap(route.linear(x, layer.kernel[...]) + layer.bias[...].reshape((1,) * (x.ndim - 1) + (-1,)))
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
                recorded.append(x)
                x = route.hidden(x)
        x = route.output(x)
        return (x, recorded) if record else x


def build_model(
    name: str, inputs: int, classes: int, hidden: tuple[int, ...], seed: int, *, run_bptt: bool = False
) -> nnx.Module:
    """``mlp``, ``snn`` (feed-forward LIF layers) or ``rsnn`` (recurrent LIF layers).

    The LIF layers use :math:`\\beta = 0.95`, threshold 1 and a fast-sigmoid surrogate of
    slope 10; the readout is ``classes`` leaky integrators with :math:`\\kappa = 0.95`. With
    ``run_bptt``, the recurrent layers of ``rsnn`` run through :func:`snnjax.run_bptt` (same
    values and gradients, faster reverse mode, no forward mode): ``snnjax train`` sets it for
    ``--rule bptt``. The feed-forward layers keep :func:`snnjax.run`, which is faster for them.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train import build_model
      >>> net = build_model("snn", inputs=5, classes=3, hidden=(8, 8), seed=0)
      >>> net(jnp.ones((10, 2, 5))).shape  # readout membrane [T, B, classes]
      (10, 2, 3)
    """
    rngs = nnx.Rngs(seed)
    sizes = (inputs, *hidden, classes)
    if name == "mlp":
        return MLP(sizes, rngs=rngs)
    if name not in ("snn", "rsnn"):
        raise ValueError(f"unknown model {name!r}; choose mlp, snn or rsnn.")
    surrogate = snnjax.surrogates.fast_sigmoid(slope=10.0)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [
            nnx.Linear(a, b, rngs=rngs),
            LIF(
                b,
                beta=0.95,
                recurrent=name == "rsnn",
                surrogate=surrogate,
                run_bptt=run_bptt and name == "rsnn",
                rngs=rngs,
            ),
        ]
    layers += [nnx.Linear(sizes[-2], classes, rngs=rngs), LeakyIntegrator(classes, kappa=0.95)]
    return Sequential(*layers)


def _classifier(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool):
    def model(params, x, labels, **hook):  # hook: tap= or route=, passed on to the network
        out = nnx.merge(graphdef, params, rest)(x, **hook)
        logits = out.max(axis=0) if spiking else out
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels), logits

    return model


def tapped_model(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool):
    """``(params, x, labels, tap) -> (per-example losses [B], logits [B, C])`` for BPTT and forward gradients.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, tapped_model
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> model = tapped_model(graphdef, rest, spiking=False)
      >>> from snnjax import rules
      >>> losses, logits = model(params, jnp.ones((2, 4)), jnp.array([0, 2]), tap=rules.identity_tap)
      >>> losses.shape, logits.shape
      ((2,), (2, 3))
    """
    return _classifier(graphdef, rest, spiking)


def routed_model(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool):
    """``(params, x, labels, route) -> (per-example losses [B], logits [B, C])`` for FA, DFA, FDFA.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, routed_model
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> model = routed_model(graphdef, rest, spiking=False)
      >>> from snnjax import rules
      >>> losses, logits = model(params, jnp.ones((2, 4)), jnp.array([0, 2]), route=rules.Route())
      >>> losses.shape
      (2,)
    """
    return _classifier(graphdef, rest, spiking)


def build_rule(name: str, tapped, routed=None, example_args: tuple = (), key: jax.Array | None = None) -> Rule:
    """The rule ``name`` (one of ``snnjax.train.RULES``) for a network given as a tapped and a routed model.

    Args:
      name: ``bptt``, ``fg-w``, ``fg-a`` (built from ``tapped``), ``fa``, ``dfa``, ``fdfa``
        (built from ``routed``, whose feedback matrices take their shapes from ``example_args``;
        FA's and DFA's are drawn from ``key``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, build_rule, routed_model, tapped_model
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> x, y = jnp.ones((2, 4)), jnp.array([0, 2])
      >>> rule = build_rule("dfa", tapped_model(graphdef, rest, False), routed_model(graphdef, rest, False), (x, y), jax.random.key(0))
      >>> (loss, logits), grads, state = rule(params, x, y, state=rule.init(params))
      >>> rule.name, logits.shape
      ('DFA', (2, 3))
    """
    if name == "bptt":
        return rules.bptt(rules.as_loss(tapped))
    if name == "fg-w":
        return rules.forward_gradient(rules.as_loss(tapped))
    if name == "fg-a":
        return rules.activity_forward_gradient(tapped)
    if name in ("fa", "dfa"):
        return getattr(rules, name)(routed, example_args, key=key)
    if name == "fdfa":
        return rules.fdfa(routed, example_args)
    raise ValueError(f"unknown rule {name!r}; choose bptt, fg-w, fg-a, fa, dfa or fdfa.")


def logits_and_layers(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool):
    """``(params, x) -> (logits, [layer outputs])``, for evaluation and plots."""

    def run(params, x):
        out, layers = nnx.merge(graphdef, params, rest)(x, record=True)
        return (out.max(axis=0) if spiking else out), layers

    return run


def count_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Number of examples whose largest logit is the label (ties: lowest index)."""
    return jnp.sum(jnp.argmax(logits, axis=-1) == labels)
