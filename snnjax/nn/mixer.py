r"""LocalMixer (Ren, Kornblith, Liao & Hinton, ICLR 2023): an MLP-mixer with a local head per block.

An image is cut into :math:`P = n^2` patches (tokens) of :math:`D` pixels, ``[B, P, D]``. Every
block mixes tokens, then channels, and splits its :math:`C` channels into :math:`G` groups:

- block 0: a dense channel mix :math:`D \to C`, then a group-wise one (:math:`G` independent
  :math:`C/G \to C/G` maps);
- block :math:`k \ge 1`: a token mix (one :math:`P \times P` map per channel, layer norm over
  the channels), a dense channel mix :math:`C \to C`, a group-wise channel mix, and the
  block's input added back (residual).

Each map is followed by a parameter-free normalisation and a ReLU (or LIF neurons, below), as
in Ren et al.'s code: the token map's over each token's channels, the dense channel map's over
all channels, the group-wise map's over each group. The *normalised* pre-activation is marked
with :func:`snnjax.rules.grouped` (the channel maps by group, the token map by token), the
promise that its token :math:`p`, group :math:`g` reaches only element :math:`[p, g]` of the
block's local loss (:func:`snnjax.group_local_loss`), which ``tests/test_mixer.py`` checks.
Activity perturbation therefore adds its noise after the normalisation, where Ren et al. add
theirs, and learns the weights through the normalisation's own Jacobian; a ReLU that is off
there has zero derivative, so its noise is masked out of the estimate.

The classifier averages the last block's tokens, normalises them and maps them to the classes.
With ``local=True`` the blocks are cut by :func:`snnjax.rules.block` and :meth:`LocalMixer.losses`
gives each block's patch- and group-wise local losses ``[P, G]`` beside the classifier's
cross-entropy (which then trains the classifier alone).

**Spiking** (``spiking=True``): the image is a constant input current for ``num_steps`` steps,
``[T, B, P, D]``, every ReLU is a layer of LIF neurons (:func:`snnjax.lif`) scanned over time,
and the local heads and the classifier read the time-averaged spikes.

With one patch (:math:`P = 1`, Ren et al.'s MNIST ``M/1/16``) there is no token to mix and the
blocks after the first have no token map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import snnjax
from snnjax import rules

__all__ = ["LocalMixer"]


def _normalize(z: jax.Array, groups: int, eps: float = 1e-5) -> jax.Array:
    """Zero mean, unit variance over each group's channels (the last axis split into ``groups``)."""
    g = z.reshape(z.shape[:-1] + (groups, -1))
    g = (g - g.mean(-1, keepdims=True)) * jax.lax.rsqrt(g.var(-1, keepdims=True) + eps)
    return g.reshape(z.shape)


def _lead(bias: jax.Array, like: jax.Array) -> jax.Array:
    """``bias`` with leading axes of size 1 up to ``like``'s rank (explicit broadcasting)."""
    return jnp.expand_dims(bias, tuple(range(like.ndim - bias.ndim)))


def _dense(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> nnx.Param:
    """He-initialised weights: :math:`\\mathcal N(0, 2 / \text{fan-in})`."""
    return nnx.Param(jax.random.normal(key, shape) * (2.0 / fan_in) ** 0.5)


class _Block(nnx.Module):
    """One mixer block: (token mix,) dense channel mix, group-wise channel mix."""

    def __init__(self, tokens: int, d_in: int, channels: int, groups: int, first: bool, key: jax.Array):
        k = jax.random.split(key, 3)
        c = channels // groups
        self.first, self.groups, self.mixes_tokens = first, groups, not first and tokens > 1
        if self.mixes_tokens:
            self.token = _dense(k[0], (tokens, tokens), tokens)  # no bias: the layer norm after it would remove it
        self.dense = _dense(k[1], (d_in, channels), d_in)
        self.dense_bias = nnx.Param(jnp.zeros(channels))
        self.group = _dense(k[2], (groups, c, c), c)
        self.group_bias = nnx.Param(jnp.zeros((groups, c)))

    def __call__(self, x: jax.Array, act: Callable[[jax.Array], jax.Array]) -> jax.Array:
        """``x`` ``[..., P, C_in]`` -> ``[..., P, C]``; ``act`` the nonlinearity (a ReLU, or LIF neurons over time)."""
        g = self.groups
        h = x
        if self.mixes_tokens:  # one P x P map per channel; layer norm over the channels, token by token
            h = act(rules.grouped(_normalize(jnp.einsum("...pc,pq->...qc", h, self.token[...]), 1), 1))
        h = act(rules.grouped(_normalize(h @ self.dense[...] + _lead(self.dense_bias[...], h), 1), g))
        split = h.reshape(h.shape[:-1] + (g, -1))
        z = jnp.einsum("...gc,gcd->...gd", split, self.group[...]) + _lead(self.group_bias[...], split)
        z = rules.grouped(_normalize(z.reshape(h.shape), g), g)  # each group normalised on its own
        return act(z if self.first else z + x)


class LocalMixer(nnx.Module):
    """Ren et al.'s LocalMixer, ANN or spiking (module docstring).

    Args:
      image: ``(H, W, C)`` of the input images (``[B, H, W]`` or ``[B, H, W, C]`` inputs).
      classes: number of classes ``K``.
      patches: ``n``, patches per side (``H`` and ``W`` divisible by it); ``P = n^2`` tokens.
      channels: ``C``, channels per token.
      blocks: number of blocks, each with its own local head.
      groups: ``G``, a divisor of ``C`` leaving 3 channels or more a group (the per-group
        normalisation of 1 channel is 0, of 2 channels nearly ±1 whatever the input: nothing learns
        through it).
      aggregate: the local heads see every group's features (Ren et al.), or one head per group.
      spiking: LIF neurons over ``num_steps`` steps in place of the ReLUs.
      num_steps: ``T`` (spiking only).
      beta: the LIF neurons' decay (spiking only).
      threshold: their threshold (spiking only).
      rngs: for the weights.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.nn import LocalMixer
      >>> net = LocalMixer((8, 8, 1), 3, patches=2, channels=16, blocks=2, groups=4, rngs=nnx.Rngs(0))
      >>> net(jnp.ones((5, 8, 8))).shape
      (5, 3)
      >>> losses, logits = net.losses(jnp.ones((5, 8, 8)), jnp.zeros(5, int))
      >>> [l.shape for l in losses]  # two blocks' [P, G] local losses, the classifier's
      [(4, 4), (4, 4), ()]
    """

    def __init__(
        self,
        image: tuple[int, int, int],
        classes: int,
        *,
        patches: int = 1,
        channels: int = 256,
        blocks: int = 2,
        groups: int = 16,
        aggregate: bool = True,
        spiking: bool = False,
        num_steps: int = 8,
        beta: float = 0.9,
        threshold: float = 1.0,
        rngs: nnx.Rngs,
    ):
        height, width, c_in = image
        for name, value in (("classes", classes), ("patches", patches), ("channels", channels), ("blocks", blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LocalMixer: {name} must be an int >= 1, got {value!r}.")
        if height % patches or width % patches:
            raise ValueError(
                f"LocalMixer: patches={patches} must divide the image's height and width, {height}x{width}."
            )
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or channels % groups:
            raise ValueError(f"LocalMixer: groups must be an int >= 1 dividing channels={channels}, got {groups!r}.")
        if channels // groups < 3:
            raise ValueError(
                f"LocalMixer: {groups} groups of {channels} channels leave {channels // groups} channel(s) a group, "
                "which the group-wise normalisation sets to 0 or to nearly +-1, whatever the input: use groups of 3 "
                "or more."
            )
        if spiking and (isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1):
            raise ValueError(f"LocalMixer: num_steps must be an int >= 1, got {num_steps!r}.")
        self.image, self.patches, self.groups, self.aggregate = tuple(image), patches, groups, aggregate
        self.spiking, self.num_steps, self.beta, self.threshold = spiking, num_steps, beta, threshold
        tokens, d_in = patches * patches, height * width * c_in // (patches * patches)
        keys = jax.random.split(rngs.params(), 2 * blocks + 1)
        self.blocks = nnx.List(
            [_Block(tokens, d_in if b == 0 else channels, channels, groups, b == 0, keys[b]) for b in range(blocks)]
        )
        head, bias = (
            ((channels, classes), (classes,))
            if aggregate
            else ((groups, channels // groups, classes), (groups, classes))
        )
        self.heads = nnx.List([nnx.Param(jax.random.normal(keys[blocks + b], head) * 0.01) for b in range(blocks)])
        self.head_biases = nnx.List([nnx.Param(jnp.zeros(bias)) for _ in range(blocks)])
        self.out = nnx.Linear(channels, classes, rngs=rngs)

    def tokens(self, images: jax.Array) -> jax.Array:
        """``[B, H, W(, C)]`` -> ``[B, P, D]`` (``[T, B, P, D]``, the same at every step, when spiking)."""
        n, (height, width, c_in) = self.patches, self.image
        x = images.reshape(images.shape[0], n, height // n, n, width // n, c_in)
        x = x.transpose(0, 1, 3, 2, 4, 5).reshape(images.shape[0], n * n, -1)
        return jnp.broadcast_to(x, (self.num_steps, *x.shape)) if self.spiking else x

    def _act(self, z: jax.Array) -> jax.Array:
        """The nonlinearity: a ReLU, or LIF neurons scanned over the leading time axis."""
        if not self.spiking:
            return jax.nn.relu(z)
        return snnjax.run(snnjax.lif(self.beta, threshold=self.threshold), z)[1]

    def _rates(self, h: jax.Array) -> jax.Array:
        """A block's output as the heads read it: spikes averaged over time (the ANN's as they are)."""
        return h.mean(axis=0) if self.spiking else h

    def __call__(self, images: jax.Array, *, local: bool = False, record: bool = False) -> Any:
        """Logits ``[B, K]``; with ``local`` also each block's output (rates when spiking) ``[B, P, C]``, the
        blocks cut; with ``record`` the logits and the list of block outputs (the blocks uncut)."""
        x, outputs = self.tokens(images), []
        for block in self.blocks:
            x = block(x, self._act)
            outputs.append(self._rates(x))
            if local:
                x = rules.block(x)
        pooled = _normalize(self._rates(x).mean(axis=-2), 1)
        logits = self.out(pooled)
        if record:
            return logits, outputs
        return (logits, tuple(outputs)) if local else logits

    def losses(self, images: jax.Array, labels: jax.Array, *, patches: bool = True) -> tuple[tuple, jax.Array]:
        """``(local losses, logits)``: each block's :func:`snnjax.group_local_loss` (``[P, G]``, or ``[G]``
        without ``patches``), then the classifier's batch-mean cross-entropy, a scalar."""
        logits, outputs = self(images, local=True)
        local = tuple(
            snnjax.group_local_loss(
                h, w[...], b[...], labels, groups=self.groups, patches=patches, aggregate=self.aggregate
            )
            for h, w, b in zip(outputs, self.heads, self.head_biases)
        )
        final = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return (*local, final), logits
