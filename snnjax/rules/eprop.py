r"""e-prop (Bellec et al. 2020): online learning for a recurrent spiking layer, memory flat in T.

The network is the paper's: inputs, one (recurrent) spiking layer, a linear readout with one
decay :math:`\kappa`, and a loss at every step,

.. math::

    s_t, z_t = \text{cell}(s_{t-1},\ x_t W_\text{in} + b + z_{t-1} W_\text{rec}), \qquad
    y_t = \kappa\, y_{t-1} + g\,(z_t W_\text{out} + b_\text{out}), \qquad
    L = \sum_t w_t \operatorname{mean}_b\, \ell(y_t),

with :math:`w_t = 1/T`, or :math:`1/k` on the last :math:`k` steps of a readout window
(``per_step_loss(..., last=k)``) and 0 before. e-prop keeps, per synapse, the part of
:math:`\partial z_t / \partial W` that runs through the
postsynaptic neuron's own state (its *eligibility trace*; for a LIF neuron
:math:`e_{ji,t} = \psi_{j,t}\, \epsilon_{ji,t}`, :math:`\epsilon_{ji,t} = \beta\,\epsilon_{ji,t-1}
+ \text{pre}_{i,t}`, the adaptation's trace included for ALIF), and drops the paths through other
neurons' recurrent spikes. The traces are updated with the cell's own per-step Jacobians, taken
by ``jax.jvp``, so any neuron works. The presynaptic input of :math:`W_\text{rec}` is
:math:`z_{t-1}`. Each trace is low-pass filtered with the readout's decay,
:math:`\bar e_t = \kappa\, \bar e_{t-1} + e_t`, and the update is

.. math::

    \Delta W_{ji} = g \sum_{t, b} L_{j,t}\, \bar e_{ji,t}, \qquad
    L_{j,t} = \sum_k B_{jk}\, \frac{\partial L}{\partial y_{k,t}},

with the feedback :math:`B` the output weights :math:`W_\text{out}` (``"symmetric"``, the
paper's symmetric e-prop), a fixed random matrix (``"random"``, random e-prop), or *learned*
(``"learned"``): FDFA's forward-mode estimate of the output Jacobian
:math:`\partial y_t / \partial z_t` (Bacho & Chu). Each step the hidden spikes' effect on the
readout is perturbed by noise :math:`u_t \sim \mathcal N(0, I)`, its tangent :math:`y'_t` is
carried through the readout by ``jax.jvp`` of its step, and after the sequence

.. math:: B \leftarrow B - \eta\,\Big(B - \frac{1}{g\,TB}\sum_{t,b} u_{t,b}^\top\, y'_{t,b}\Big),

the estimate divided by the readout's gain :math:`g` (which the update applies itself), so its
fixed point is :math:`W_\text{out}` (the noise's past terms average out): learned feedback
converges to symmetric e-prop's without reading :math:`W_\text{out}`. The call's
gradient uses the :math:`B` it started with. The readout's
weights get their exact gradient, :math:`g \sum_t \bar z_t^\top \partial L / \partial y_t`.
Symmetric e-prop is thus the exact gradient of the same network with the recurrent spikes
:math:`z_{t-1}` in the recurrent input detached (``stop_gradient``); this is how it is tested.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.neurons.chain import Dense
from snnjax.neurons.neuron import Neuron
from snnjax.rules import forward_mode
from snnjax.rules.feedback import FeedbackState, fdfa_update
from snnjax.rules.protocol import Rule
from snnjax.rules.stepped import SteppedLoss, cell_of, depends_on_params, local_jacobians, read_fields, to_params

__all__ = ["eprop"]

FEEDBACKS = ("symmetric", "random", "learned")


def _layers(loss_fn: Any, params: Any) -> tuple[Dense, Neuron, Dense, Neuron]:
    """The four layers of an e-prop network, checked (module docstring)."""
    if not isinstance(loss_fn, SteppedLoss):
        raise ValueError(
            "eprop: needs the loss of a stepped network, snnjax.rules.per_step_loss(network, loss_t), with network "
            f"snnjax.chain(dense, neuron, dense, readout); got {type(loss_fn).__name__}."
        )
    layers = tuple(getattr(loss_fn.network(params), "layers", ()))
    kinds = (Dense, Neuron, Dense, Neuron)
    if len(layers) != 4 or not all(isinstance(layer, kind) for layer, kind in zip(layers, kinds)):
        got = [type(layer).__name__ for layer in layers] or [type(loss_fn.network(params)).__name__]
        raise ValueError(
            "eprop: the network must be snnjax.chain(snnjax.dense(W_in), spiking neuron (recurrent or not), "
            f"snnjax.dense(W_out), linear readout such as snnjax.leaky_integrator); got layers {got}."
        )
    d_in, hidden, d_out, _ = layers
    for index, (size, what) in enumerate(((d_in.kernel.shape[1], "hidden layer"), (d_out.kernel.shape[1], "readout"))):
        if depends_on_params(loss_fn, params, 2 * index + 1, size, d_in.kernel.dtype, "eprop", cell=True):
            raise ValueError(
                f"eprop: the {what}'s dynamics depend on the parameters (a trainable decay or threshold); e-prop "
                "trains the weights only: make it fixed."
            )
    return layers


def _readout_jacobians(readout: Neuron, size: int, dtype: Any, value: float) -> tuple[jax.Array, jax.Array]:
    """``d y_t / d y_{t-1}`` and ``d y_t / d I_t`` of the readout at one point, flattened."""
    state = jax.tree.map(lambda a: jnp.full_like(a, value), readout.init((1, size), dtype))
    current = jnp.full((1, size), value, dtype)
    ones = jax.tree.map(jnp.ones_like, state)
    d_state = jax.jvp(lambda s: readout.step(s, current)[1], (state,), (ones,))[1]
    d_current = jax.jvp(lambda i: readout.step(state, i)[1], (current,), (jnp.ones_like(current),))[1]
    return d_state.ravel(), d_current.ravel()


def _check_readout(readout: Neuron, size: int, dtype: Any) -> None:
    """Raise ``ValueError`` unless the readout is ``y_t = kappa y_{t-1} + g I_t`` with one ``kappa``
    and one ``g`` (checked on concrete values, at ``init``)."""
    (kappa, g), (kappa2, g2) = (
        [np.asarray(a) for a in _readout_jacobians(readout, size, dtype, value)] for value in (0.0, 1.7)
    )  # the same at two points: linear
    one_decay = np.allclose(kappa, kappa[0]) and np.allclose(g, g[0])
    if not (one_decay and np.allclose(kappa2, kappa) and np.allclose(g2, g)):
        raise ValueError(
            "eprop: the readout must be linear with one decay for all outputs (snnjax.leaky_integrator with a scalar "
            "kappa): e-prop filters the eligibility traces with that decay."
        )


def eprop(loss_fn: SteppedLoss, *, feedback: str = "symmetric", scale: float = 1.0, rate: float = 0.01) -> Rule:
    r"""e-prop: eligibility traces and learning signals in one forward scan (module docstring).

    Args:
      loss_fn: :func:`snnjax.rules.per_step_loss` of ``snnjax.chain(snnjax.dense(W_in, b),
        neuron, snnjax.dense(W_out, b_out), readout)``: any spiking ``neuron`` (LIF, ALIF,
        current-based LIF, your own), with recurrent weights or without; a linear ``readout``
        with one decay (``snnjax.leaky_integrator(kappa)``).
      feedback: ``"symmetric"`` (:math:`B = W_\text{out}`), ``"random"`` (fixed :math:`B`,
        drawn at ``init`` as ``scale`` times a standard normal over :math:`\sqrt{C}`) or
        ``"learned"`` (estimated by forward mode, from zero; calls need a ``key``).
      scale: the random feedback's scale.
      rate: the learned feedback's update rate :math:`\eta \in (0, 1]`.

    Returns:
      A stateful :class:`snnjax.rules.Rule`: ``state = rule.init(params, key=key)``, then
      ``(loss, ys), grads, state = rule(params, xs, labels, state=state)`` for ``xs``
      ``[T, B, N_in]``; ``ys`` ``[T, B, C]``. The state holds ``B`` (``FeedbackState``, one
      ``[N, C]`` matrix; for ``"symmetric"``, none). ``"learned"`` draws the noise of step ``t``
      from ``fold_in(key, t)``.

    Raises:
      ValueError: for another network, a readout that is not linear with one decay (at
        ``init``), or an unknown ``feedback`` (naming it), ``"random"`` initialised without a key,
        ``"learned"`` called without one, or a ``rate`` outside ``(0, 1]``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> loss_fn = rules.per_step_loss(
      ...     lambda p: snnjax.chain(snnjax.dense(p["in"]), snnjax.lif(0.9, recurrent=p["rec"]),
      ...                            snnjax.dense(p["out"]), snnjax.leaky_integrator(0.8)),
      ...     optax.softmax_cross_entropy_with_integer_labels)
      >>> keys = jax.random.split(jax.random.key(0), 3)
      >>> params = {"in": jax.random.normal(keys[0], (3, 5)), "rec": jax.random.normal(keys[1], (5, 5)) * 0.3,
      ...           "out": jax.random.normal(keys[2], (5, 2))}
      >>> rule = rules.eprop(loss_fn)
      >>> xs, labels = jax.random.uniform(jax.random.key(1), (20, 4, 3)) * 2, jnp.array([0, 1, 0, 1])
      >>> (loss, ys), grads, state = rule(params, xs, labels, state=rule.init(params))
      >>> ys.shape, grads["rec"].shape
      ((20, 4, 2), (5, 5))
    """
    if feedback not in FEEDBACKS:
        raise ValueError(f"eprop: feedback must be one of {', '.join(map(repr, FEEDBACKS))}, got {feedback!r}.")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"eprop: rate must lie in (0, 1], got {rate}.")
    learned = feedback == "learned"

    def init(params, *args, key=None):
        _, _, d_out, readout = _layers(loss_fn, params)
        _check_readout(readout, d_out.kernel.shape[1], d_out.kernel.dtype)
        if feedback == "symmetric":
            return FeedbackState((), jnp.zeros((), jnp.int32))
        if learned:
            return FeedbackState((jnp.zeros(d_out.kernel.shape, d_out.kernel.dtype),), jnp.zeros((), jnp.int32))
        if key is None:
            raise ValueError("eprop: feedback='random' needs init(..., key=key) to draw its fixed matrix.")
        n, classes = d_out.kernel.shape
        matrix = scale * jax.random.normal(key, (n, classes), d_out.kernel.dtype) / jnp.sqrt(classes)
        return FeedbackState((matrix,), jnp.zeros((), jnp.int32))

    def apply(state, params, xs, labels, key=None):
        if learned:
            key = forward_mode.require_key(key, "eprop(feedback='learned')")
        d_in, hidden, d_out, readout = _layers(loss_fn, params)
        steps, batch = xs.shape[0], xs.shape[1]
        dtype = xs.dtype
        (n_in, n), classes = d_in.kernel.shape, d_out.kernel.shape[1]
        kappa, gain = (a[0] for a in _readout_jacobians(readout, classes, dtype, 0.0))  # checked at init
        recurrent = hidden.recurrence
        cell = cell_of(hidden)[0]
        b = d_out.kernel if feedback == "symmetric" else state.matrices[0]
        s0, r0 = hidden.init((batch, n), dtype), readout.init((batch, classes), dtype)
        fields = read_fields(cell, s0, jnp.zeros((batch, n), dtype))
        pres = [n_in, 1] + ([n] if recurrent is not None else [])  # W_in, b, W_rec (a bias has one input)
        traces0 = [[jnp.zeros((batch, p, n), dtype)] * len(fields) for p in pres]
        filtered0 = [jnp.zeros((batch, p, n), dtype) for p in pres]

        def body(carry, x_t):
            s, r, traces, filtered, z_bar, one_bar, grads, loss_sum, t, estimate = carry
            w_t = loss_fn.weight(t, steps, dtype)
            pre = [x_t, jnp.ones((batch, 1), dtype)] + ([s.z] if recurrent is not None else [])
            current = d_in(x_t) + (0.0 if recurrent is None else s.z @ recurrent.weights.astype(dtype))
            s_new, z, d_state, d_current = local_jacobians(cell, s, current, fields)
            if learned:  # the readout's tangent along noise on the hidden spikes' contribution
                r_dot, sums = estimate
                u = forward_mode.draw(jax.random.fold_in(key, t), (batch, n), dtype)
                (r, y), (r_dot, y_dot) = jax.jvp(readout.step, (r, d_out(z)), (r_dot, u @ d_out.kernel))
                estimate = (r_dot, sums + jnp.einsum("bn,bc->nc", u, y_dot))
            else:
                r, y = readout.step(r, d_out(z))
            loss, error = jax.value_and_grad(lambda y: w_t * jnp.mean(loss_fn.loss_t(y, labels)))(y)
            signal = error @ b.T  # L_t [B, N]
            new_traces, new_filtered, new_hidden = [], [], []
            for k, (eps, bar, p) in enumerate(zip(traces, filtered, pre)):
                # e_t = d z_t / d W through the neuron's own state; then filtered with the readout's decay
                e = (
                    sum(d[1][:, None, :] * eps[m] for m, d in enumerate(d_state))
                    + d_current[1][:, None, :] * p[..., None]
                )
                bar = kappa * bar + e
                new_hidden.append(grads["hidden"][k] + gain * jnp.einsum("bj,bij->ij", signal, bar))
                new_traces.append(
                    [
                        sum(d_state[m][0][f][:, None, :] * eps[m] for m in range(len(fields)))
                        + d_current[0][f][:, None, :] * p[..., None]
                        for f in fields
                    ]
                )
                new_filtered.append(bar)
            z_bar, one_bar = kappa * z_bar + z, kappa * one_bar + 1.0
            out = grads["out"] + gain * z_bar.T @ error
            grads = dict(hidden=new_hidden, out=out, out_bias=grads["out_bias"] + gain * one_bar * error.sum(0))
            return (s_new, r, new_traces, new_filtered, z_bar, one_bar, grads, loss_sum + loss, t + 1, estimate), y

        grads0 = dict(
            hidden=[jnp.zeros((p, n), dtype) for p in pres],
            out=jnp.zeros((n, classes), dtype),
            out_bias=jnp.zeros((classes,), dtype),
        )
        carry0 = (
            s0,
            r0,
            traces0,
            filtered0,
            jnp.zeros((batch, n), dtype),
            jnp.zeros((), dtype),
            grads0,
            jnp.zeros((), dtype),
            jnp.zeros((), jnp.int32),
            (jax.tree.map(jnp.zeros_like, r0), jnp.zeros((n, classes), dtype)) if learned else None,
        )
        (*_, grads, loss, _, estimate), ys = jax.lax.scan(body, carry0, xs)
        matrices = state.matrices
        if learned:
            # y' carries the readout's gain g; B estimates W_out, which the update scales by g
            matrices = tuple(fdfa_update(b, estimate[1] / (steps * batch * gain), rate) for b in matrices)

        w_rec = grads["hidden"][2] if len(grads["hidden"]) > 2 else None
        per_layer = [(grads["hidden"][0], grads["hidden"][1][0], w_rec), (grads["out"], grads["out_bias"])]
        return (loss, ys), to_params(loss_fn, params, per_layer), FeedbackState(matrices, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name=f"e-prop ({feedback})", loss_fn=loss_fn)
