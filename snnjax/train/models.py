r"""The networks and rules the training command builds by name.

Every network is an ordinary NNX module, and every rule is built from its loss alone
(:mod:`snnjax.rules`): the rules find the layers in the traced loss. Spiking networks read
out through leaky integrators and classify by the maximum membrane over time,
:math:`\text{logits} = \max_t v_t`, with cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import snnjax
from snnjax import rules
from snnjax.nn import ALIF, LIF, AvgPool2d, Flatten, LeakyIntegrator, LocalMixer, Sequential, network
from snnjax.rules.protocol import Rule
from snnjax.train.config import NEURONS, READOUTS

__all__ = ["MLP", "ConvSNN", "build_model", "build_rule", "classifier_loss", "local_loss", "stepped_loss"]


class MLP(nnx.Module):
    """A ReLU perceptron ``[B, D] -> [B, classes]``.

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

    def __call__(self, x: jax.Array, *, record: bool = False):
        """Logits ``[B, classes]``; with ``record`` also the hidden activations ``[B, N_l]``."""
        recorded = []
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
            recorded.append(x)
        x = self.layers[-1](x)
        return (x, recorded) if record else x


class ConvSNN(nnx.Module):
    r"""A convolutional spiking network over time-major images ``[T, B, H, W(, C)]``.

    Per block: a 3x3 ``nnx.Conv`` (same padding), LIF neurons, 2x2 average pooling; then the
    flattened feature map, an ``nnx.Linear`` to the classes and a leaky-integrator readout
    ``[T, B, classes]``. The convolutions run on all ``T * B`` frames at once.

    Args:
      image: ``(H, W, C)`` of the input images.
      channels: output channels of each convolutional block.
      classes: number of classes.
      rngs: for the weights.
      surrogate: the LIF layers' surrogate.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import ConvSNN
      >>> net = ConvSNN((8, 8, 1), (4, 8), 3, rngs=nnx.Rngs(0))
      >>> v, layers = net(jnp.ones((5, 2, 8, 8)), record=True)
      >>> v.shape, [h.shape for h in layers]
      ((5, 2, 3), [(5, 2, 8, 8, 4), (5, 2, 4, 4, 8), (5, 2, 3)])
    """

    def __init__(
        self,
        image: tuple[int, int, int],
        channels: tuple[int, ...],
        classes: int,
        *,
        rngs: nnx.Rngs,
        surrogate: snnjax.surrogates.SurrogateLike = "fast_sigmoid",
    ):
        height, width, c_in = image
        self.convs = nnx.List([nnx.Conv(a, b, (3, 3), rngs=rngs) for a, b in zip((c_in, *channels[:-1]), channels)])
        self.neurons = nnx.List([LIF(c, beta=0.9, surrogate=surrogate) for c in channels])
        size = (height // 2 ** len(channels)) * (width // 2 ** len(channels)) * channels[-1]
        if size == 0:
            raise ValueError(f"ConvSNN: {len(channels)} pooling blocks leave nothing of a {height}x{width} image.")
        self.image = tuple(image)
        self.out = nnx.Linear(size, classes, rngs=rngs)
        self.readout = LeakyIntegrator(classes, kappa=0.9)

    def as_sequential(self) -> Sequential:
        """The same network, sharing these parameters, as a :class:`snnjax.nn.Sequential` of
        ``nnx.Conv``, LIF, :class:`~snnjax.nn.AvgPool2d`, ..., :class:`~snnjax.nn.Flatten`,
        ``nnx.Linear`` and the readout, over ``[T, B, H, W, C]``: what :func:`snnjax.nir.export`
        takes (``input_shape=self.image``; its LIF layers reset by subtraction, so
        ``approximate_reset=True``).

        Examples:
          >>> import jax.numpy as jnp
          >>> from flax import nnx
          >>> from snnjax.train import ConvSNN
          >>> net = ConvSNN((8, 8, 1), (4, 8), 3, rngs=nnx.Rngs(0))
          >>> xs = jnp.ones((5, 2, 8, 8))
          >>> bool(jnp.allclose(net.as_sequential()(xs.reshape(5, 2, 8, 8, 1)), net(xs)))
          True
        """
        layers = []
        for conv, neuron in zip(self.convs, self.neurons):
            layers += [conv, neuron, AvgPool2d(2)]
        return Sequential(*layers, Flatten(), self.out, self.readout)

    def __call__(self, xs: jax.Array, *, record: bool = False):
        """The readout membrane ``[T, B, classes]``; with ``record`` also each layer's output.

        The :class:`~snnjax.nn.Sequential` view is built on every call (once per trace under
        ``jit``; eagerly, a few Python objects beside the network's own work) rather than kept as
        an attribute, which would make every layer reachable by two paths in the module's graph.
        """
        return self.as_sequential()(xs.reshape(*xs.shape[:2], *self.image), record=record)


def build_model(
    name: str,
    inputs: int,
    classes: int,
    hidden: tuple[int, ...],
    seed: int,
    *,
    image: tuple[int, int, int] | None = None,
    run_bptt: bool = False,
    groups: int = 16,
    patches: int = 1,
    steps: int = 4,
    neuron: str = "lif",
) -> nnx.Module:
    """``mlp``, ``snn`` (feed-forward LIF layers), ``rsnn`` (recurrent LIF layers), ``conv`` (:class:`ConvSNN`),
    ``mixer`` or ``spiking-mixer`` (:class:`snnjax.nn.LocalMixer`).

    The mixers take ``image``, one block per entry of ``hidden`` (its channels), ``groups``
    and ``patches`` per side; the spiking one runs ``steps`` steps of LIF neurons.

    The LIF layers of ``snn`` and ``rsnn`` use :math:`\\beta = 0.95`, threshold 1 and a
    fast-sigmoid surrogate of slope 10 (``neuron="alif"``: adaptive LIF layers,
    :math:`\\alpha = 0.95`, :math:`\\rho = 0.99`, the same surrogate); the readout is ``classes`` leaky integrators with
    :math:`\\kappa = 0.95`. ``conv`` takes ``hidden`` as its channels and needs ``image``. With
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
    surrogate = snnjax.surrogates.fast_sigmoid(slope=10.0)
    if name in ("conv", "mixer", "spiking-mixer") and image is None:
        raise ValueError(f"model {name!r} takes images: pass image=(H, W, C).")
    if name in ("mixer", "spiking-mixer"):
        spiking = dict(spiking=True, num_steps=steps) if name == "spiking-mixer" else {}
        return LocalMixer(
            image, classes, patches=patches, channels=hidden[0], blocks=len(hidden), groups=groups, rngs=rngs, **spiking
        )
    if name == "conv":
        return ConvSNN(image, tuple(hidden), classes, rngs=rngs, surrogate=surrogate)
    if name not in ("snn", "rsnn"):
        raise ValueError(f"unknown model {name!r}; choose mlp, snn, rsnn, conv, mixer or spiking-mixer.")
    layers = []
    recurrent = name == "rsnn"
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {', '.join(NEURONS)}.")
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        options = dict(recurrent=recurrent, surrogate=surrogate, run_bptt=run_bptt and recurrent, rngs=rngs)
        layer = LIF(b, beta=0.95, **options) if neuron == "lif" else ALIF(b, alpha=0.95, rho=0.99, **options)
        layers += [nnx.Linear(a, b, rngs=rngs), layer]
    layers += [nnx.Linear(sizes[-2], classes, rngs=rngs), LeakyIntegrator(classes, kappa=0.95)]
    return Sequential(*layers)


def read_out(out: jax.Array, readout: str) -> jax.Array:
    """A spiking model's logits ``[B, C]`` from its readout over time ``[T, B, C]``: the maximum
    (``max``), the mean (``mean``, and ``per-step``, whose loss is at every step) or the last step.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train.models import read_out
      >>> out = jnp.array([[[0.0, 3.0]], [[2.0, 1.0]]])  # T = 2, B = 1, C = 2
      >>> [read_out(out, r).tolist() for r in ("max", "mean", "last")]
      [[[2.0, 3.0]], [[1.0, 2.0]], [[2.0, 1.0]]]
    """
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}.")
    if readout == "max":
        return out.max(axis=0)
    return out[-1] if readout == "last" else out.mean(axis=0)


def per_step_cross_entropy(out: jax.Array, labels: jax.Array) -> jax.Array:
    """The cross-entropy of a readout over time ``[T, B, C]`` at every step, averaged over time: ``[B]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train.models import per_step_cross_entropy
      >>> [round(float(v), 4) for v in per_step_cross_entropy(jnp.zeros((3, 2, 4)), jnp.array([0, 1]))]  # log 4
      [1.3863, 1.3863]
    """
    return jnp.mean(jax.vmap(optax.softmax_cross_entropy_with_integer_labels, in_axes=(0, None))(out, labels), axis=0)


def classifier_loss(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool, readout: str = "max") -> Callable:
    """``loss_fn(params, x, labels) -> (mean cross-entropy, logits [B, C])``, what every rule is built from.

    Spiking networks' logits are read out over time (:func:`read_out`, default their maximum);
    with ``readout="per-step"`` the cross-entropy is taken at every step and averaged.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, classifier_loss
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> loss, logits = classifier_loss(graphdef, rest, spiking=False)(params, jnp.ones((2, 4)), jnp.array([0, 2]))
      >>> loss.shape, logits.shape
      ((), (2, 3))
    """

    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}.")

    def loss_fn(params, x, labels):
        out = nnx.merge(graphdef, params, rest)(x)
        if spiking and readout == "per-step":
            return jnp.mean(per_step_cross_entropy(out, labels)), read_out(out, readout)
        logits = read_out(out, readout) if spiking else out
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits

    return loss_fn


def local_loss(graphdef: nnx.GraphDef, rest: nnx.State) -> Callable:
    """``loss_fn(params, x, labels) -> ((block losses..., classifier loss), logits)`` of a
    :class:`snnjax.nn.LocalMixer`: its blocks' patch- and group-wise local losses, the blocks cut.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, local_loss
      >>> net = build_model("mixer", 16, 3, (8, 8), seed=0, image=(4, 4, 1), groups=2)
      >>> graphdef, params, rest = nnx.split(net, nnx.Param, ...)
      >>> losses, logits = local_loss(graphdef, rest)(params, jnp.ones((2, 4, 4)), jnp.array([0, 2]))
      >>> [l.shape for l in losses], logits.shape
      ([(1, 2), (1, 2), ()], (2, 3))
    """

    def loss_fn(params, x, labels):
        return nnx.merge(graphdef, params, rest).losses(x, labels)

    return loss_fn


def stepped_loss(model: nnx.Module, readout: str = "per-step") -> rules.SteppedLoss:
    """The loss of ``model`` (an ``snn`` or ``rsnn`` :class:`snnjax.nn.Sequential`) stepped one time step
    at a time, with a cross-entropy at every step (``per-step``) or at the last (``last``): what
    the online rules are built from.

    Its ``aux`` is the readout ``[T, B, C]``; the training step classifies it with :func:`read_out`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, stepped_loss
      >>> model = build_model("rsnn", 4, 3, (8,), seed=0)
      >>> loss, ys = stepped_loss(model)(nnx.state(model, nnx.Param), jnp.ones((5, 2, 4)), jnp.array([0, 2]))
      >>> loss.shape, ys.shape
      ((), (5, 2, 3))
    """
    if readout not in ("per-step", "last"):
        raise ValueError(
            f"readout {readout!r}: an online rule learns from a loss summed over steps; use 'per-step' or 'last'."
        )
    last = 1 if readout == "last" else None
    return rules.per_step_loss(network(model), optax.softmax_cross_entropy_with_integer_labels, last=last)


def build_rule(
    name: str,
    loss_fn: Callable,
    window: int = 16,
    directions: int = 1,
    exact_output: bool = False,
    guess_loss_fn: Callable | None = None,
) -> Rule:
    """The rule ``name`` (one of ``snnjax.train.RULES``) built from ``loss_fn``.

    Args:
      name: ``bptt``, ``fg-w``, ``fg-a``, ``fa``, ``dfa``, ``fdfa``, or, for a
        :func:`stepped_loss`, ``eprop``, ``eprop-random``, ``eprop-learned``, ``tbptt``, ``rtrl``, ``online-dfa``,
        ``online-fdfa``, ``online-fg-a``, ``ostl`` or ``ottt``, or, for a
        :func:`local_loss`, ``lg-bp``, ``lg-fg-w`` or ``lg-fg-a``.
      loss_fn: ``(params, *args) -> (loss, aux)``.
      window: ``tbptt``'s window in steps.
      directions: the forward-gradient rules' ``num_directions``.
      exact_output: activity perturbation leaves the output layers to their exact gradient
        (:func:`snnjax.rules.activity_forward_gradient`); ``lg-fg-a`` always does, as Ren et al.
      guess_loss_fn: ``fg-guess-lg``'s local loss (:func:`local_loss`), whose gradient is the
        guessed direction of ``loss_fn``'s forward gradient; ``fg-guess-dfa`` guesses with DFA.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train import build_model, build_rule, classifier_loss
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> x, y = jnp.ones((2, 4)), jnp.array([0, 2])
      >>> rule = build_rule("dfa", classifier_loss(graphdef, rest, False))
      >>> (loss, logits), grads, state = rule(params, x, y, state=rule.init(params, x, y, key=jax.random.key(0)))
      >>> rule.name, logits.shape
      ('DFA', (2, 3))
    """
    builders = {
        "bptt": rules.bptt,
        "fg-w": lambda f: rules.forward_gradient(f, directions),
        "fg-a": lambda f: rules.activity_forward_gradient(f, directions, exact_output=exact_output),
        "lg-bp": rules.bptt,
        "lg-fg-w": lambda f: rules.forward_gradient(f, directions),
        "lg-fg-a": lambda f: rules.activity_forward_gradient(f, directions, exact_output=True),
        "fg-guess-dfa": lambda f: rules.guessed_forward_gradient(f, rules.dfa(f), per_leaf=True),
        "fg-guess-lg": lambda f: rules.guessed_forward_gradient(f, rules.bptt(_needs(guess_loss_fn)), per_leaf=True),
        "fa": rules.fa,
        "dfa": rules.dfa,
        "fdfa": rules.fdfa,
        "eprop": rules.eprop,
        "eprop-random": lambda f: rules.eprop(f, feedback="random"),
        "eprop-learned": lambda f: rules.eprop(f, feedback="learned"),
        "tbptt": lambda f: rules.tbptt(f, window),
        "rtrl": rules.rtrl,
        "online-dfa": rules.online_dfa,
        "online-fdfa": lambda f: rules.online_dfa(f, feedback="fdfa"),
        "online-fg-a": lambda f: rules.online_activity_forward_gradient(f, directions),
        "ostl": rules.ostl,
        "ottt": rules.ottt,
    }
    if name not in builders:
        raise ValueError(f"unknown rule {name!r}; choose {', '.join(builders)}.")
    return builders[name](loss_fn)


def _needs(guess_loss_fn: Callable | None) -> Callable:
    if guess_loss_fn is None:
        raise ValueError("rule 'fg-guess-lg' guesses with a local loss: pass guess_loss_fn (snnjax.train.local_loss).")
    return guess_loss_fn


def logits_and_layers(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool, readout: str = "max"):
    """``(params, x) -> (logits, [layer outputs])``, for evaluation and plots. A spiking model's
    logits are :func:`read_out` with ``readout``; with ``per-step``, the whole readout ``[T, B, C]``
    (scored at every step by :func:`snnjax.train.make_eval_step`)."""

    def run(params, x):
        out, layers = nnx.merge(graphdef, params, rest)(x, record=True)
        if not spiking or readout == "per-step":
            return out, layers
        return read_out(out, readout), layers

    return run


def count_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Number of examples whose largest logit is the label (ties: lowest index)."""
    return jnp.sum(jnp.argmax(logits, axis=-1) == labels)
