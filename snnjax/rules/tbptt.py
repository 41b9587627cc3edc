r"""Truncated backpropagation through time: BPTT inside windows of ``k`` steps, the state passed on.

The sequence is cut into windows of ``k`` steps. Within a window the gradient is exact BPTT;
the state entering a window is treated as a constant (``stop_gradient``), so no gradient
crosses a window boundary:

.. math::

    g = \sum_{w} \frac{\partial}{\partial\theta} \Bigl[\sum_{t \in w} w_t\,
        \operatorname{mean}_b\, \ell\bigl(y_t(\theta;\ \operatorname{sg}(s_{t_w - 1}))\bigr)\Bigr].

with the step weights :math:`w_t = 1/T`, or :math:`1/k` on the last :math:`k` steps of a readout
window (``per_step_loss(..., last=k)``) and 0 before. With ``k = T`` this is BPTT; with ``k = 1``
each step's loss reaches only that step's
computation. Memory holds one window's residuals, so it does not grow with ``T`` (the outputs
``ys`` returned as ``aux`` are ``[T, B, C]``). The windows run in one ``lax.scan``; a last,
shorter window takes the remainder when ``k`` does not divide ``T``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from snnjax.rules.protocol import Rule, stateless
from snnjax.rules.stepped import SteppedLoss

__all__ = ["tbptt"]


def tbptt(loss_fn: SteppedLoss, window: int) -> Rule:
    r"""Truncated BPTT with windows of ``window`` steps on a stepped network (module docstring).

    Args:
      loss_fn: the loss of a stepped network, :func:`snnjax.rules.per_step_loss`; any
        :func:`snnjax.chain` (recurrent layers and trainable neuron parameters included) or
        user :class:`snnjax.Neuron`.
      window: ``k``, the number of steps the gradient flows back through.

    Returns:
      A :class:`snnjax.rules.Rule`: ``(loss, ys), grads = rule(params, xs, labels)`` for inputs
      ``xs`` ``[T, B, N_in]``; ``ys`` ``[T, B, C]`` as ``loss_fn`` returns them.

    Raises:
      ValueError: for a loss that is not a :class:`snnjax.rules.SteppedLoss`, or ``window < 1``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> loss_fn = rules.per_step_loss(
      ...     lambda p: snnjax.chain(snnjax.dense(p["w1"]), snnjax.lif(0.9, recurrent=p["r"]), snnjax.dense(p["w2"]),
      ...                            snnjax.leaky_integrator(0.9)),
      ...     optax.softmax_cross_entropy_with_integer_labels)
      >>> params = {"w1": jnp.ones((3, 4)), "r": jnp.eye(4) * 0.1, "w2": jnp.ones((4, 2))}
      >>> xs, labels = jnp.ones((10, 2, 3)), jnp.array([0, 1])
      >>> (loss, ys), grads = rules.tbptt(loss_fn, window=10)(params, xs, labels)
      >>> exact = jax.grad(lambda p: loss_fn(p, xs, labels)[0])(params)  # one window: BPTT
      >>> bool(jnp.allclose(grads["r"], exact["r"], atol=1e-6)), ys.shape
      (True, (10, 2, 2))
    """
    if not isinstance(loss_fn, SteppedLoss):
        raise ValueError(
            "tbptt: needs the loss of a stepped network, snnjax.rules.per_step_loss(network, loss_t) "
            f"(snnjax.nn.network(model) makes the network of an NNX model); got {type(loss_fn).__name__}."
        )
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"tbptt: window must be an int >= 1, got {window!r}.")

    def apply(state, params, xs, labels, key=None):
        del key  # deterministic
        xs = jnp.asarray(xs)
        if xs.ndim < 2 or not xs.shape[0]:
            raise ValueError(f"tbptt: xs must be time-major [T, B, ...] with T >= 1, got shape {xs.shape}.")
        steps = xs.shape[0]
        k = min(window, steps)
        full, rest = divmod(steps, k)

        def window_loss(p, carry, chunk, first):
            w = loss_fn.weight(first + jnp.arange(chunk.shape[0]), steps, chunk.dtype)  # the chunk's steps
            net = loss_fn.network(p)
            carry, ys = jax.lax.scan(net.step, jax.lax.stop_gradient(carry), chunk)
            per_step = jax.vmap(loss_fn.loss_t, in_axes=(0, None))(ys, labels)  # [k, B]
            return jnp.sum(w * jnp.mean(per_step, axis=1)), (carry, ys)

        step = jax.value_and_grad(window_loss, has_aux=True)

        def one(acc, chunk):
            carry, loss, grads, first = acc
            (part, (carry, ys)), g = step(params, carry, chunk, first)
            return (carry, loss + part, jax.tree.map(jnp.add, grads, g), first + chunk.shape[0]), ys

        net = loss_fn.network(params)
        zero = jax.tree.map(jnp.zeros_like, params)
        start = (net.init(xs.shape[1:], xs.dtype), jnp.zeros((), xs.dtype), zero, jnp.zeros((), jnp.int32))
        head = xs[: full * k].reshape(full, k, *xs.shape[1:])
        acc, ys = jax.lax.scan(one, start, head)
        ys = ys.reshape(full * k, *ys.shape[2:])
        if rest:
            acc, tail = one(acc, xs[full * k :])
            ys = jnp.concatenate([ys, tail])
        _, loss, grads, _ = acc
        return (loss, ys), grads, state

    return stateless(apply, f"TBPTT(k={window})", loss_fn)
