r"""e-prop (Bellec et al. 2020): online learning for recurrent spiking layers, memory flat in T.

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

**Several hidden layers** ``(dense, neuron)`` pairs, each recurrent or not: every layer keeps
its own traces, its presynaptic input being the spikes of the layer below at the same step,
and gets its own learning signal :math:`L^l_t`:

- symmetric: :math:`\partial L_t / \partial z^l_t` through :math:`W_\text{out}` and the layers
  above *in the same step*, their states of the step before held fixed (one ``jax.vjp`` per step),
  :math:`L^l_t = \frac{\partial L}{\partial y_t} W_\text{out}^\top J^{l}_t`, with :math:`J^l_t =
  \partial z^L_t / \partial z^l_t` the same-step Jacobian of the layers above;
- random: a fixed :math:`B_l` ``[N_l, C]`` per layer, the output error broadcast to every layer
  as in direct feedback alignment;
- learned: one FDFA estimate per layer, the noise :math:`u^l_t` on each layer's spikes (all at
  once, independent) carried through the layers above and the readout by one ``jax.jvp``; its
  fixed point is the mean of :math:`J^l_t W_\text{out}`.

The update is :math:`g \sum_t L^l_t \bar e^l_t` as for one layer. It drops, besides the paths
e-prop drops in one layer, the temporal paths through the states of the layers above, and uses
the Jacobian :math:`J^l_t` of step :math:`t` for the traces of earlier steps that the readout's
memory carries: it is the exact gradient of the network with the recurrent spikes detached
where the layers above have no memory and a constant Jacobian, and equals
:func:`snnjax.rules.ostl` when the readout has no memory (:math:`\kappa = 0`); both are tested.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.neurons.chain import Dense
from snnjax.neurons.neuron import Neuron, recurrent_input
from snnjax.rules import forward_mode
from snnjax.rules.feedback import FeedbackState, fdfa_update
from snnjax.rules.protocol import Rule
from snnjax.rules.stepped import SteppedLoss, cell_of, depends_on_params, local_jacobians, read_fields, to_params

__all__ = ["eprop"]

FEEDBACKS = ("symmetric", "random", "learned")


def _layers(loss_fn: Any, params: Any) -> tuple[list[tuple[Dense, Neuron]], Dense, Neuron]:
    """The hidden ``(dense, neuron)`` pairs, the output dense layer and the readout of an e-prop network, checked."""
    if not isinstance(loss_fn, SteppedLoss):
        raise ValueError(
            "eprop: needs the loss of a stepped network, snnjax.rules.per_step_loss(network, loss_t), with network "
            f"snnjax.chain(dense, neuron, ..., dense, readout); got {type(loss_fn).__name__}."
        )
    layers = tuple(getattr(loss_fn.network(params), "layers", ()))
    kinds = (Dense, Neuron) * (len(layers) // 2)
    if len(layers) < 4 or len(layers) % 2 or not all(isinstance(layer, kind) for layer, kind in zip(layers, kinds)):
        got = [type(layer).__name__ for layer in layers] or [type(loss_fn.network(params)).__name__]
        raise ValueError(
            "eprop: the network must be snnjax.chain(snnjax.dense(W_1), spiking neuron, ..., snnjax.dense(W_out), "
            f"linear readout such as snnjax.leaky_integrator): one or more hidden pairs; got layers {got}."
        )
    for index, d in enumerate(layers[0::2]):
        what = "readout" if 2 * index + 2 == len(layers) else f"hidden layer {index}"
        if depends_on_params(loss_fn, params, 2 * index + 1, d.kernel.shape[1], d.kernel.dtype, "eprop", cell=True):
            raise ValueError(
                f"eprop: the {what}'s dynamics depend on the parameters (a trainable decay or threshold); e-prop "
                "trains the weights only: make it fixed."
            )
    return list(zip(layers[0:-2:2], layers[1:-2:2])), layers[-2], layers[-1]


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
        neuron, ..., snnjax.dense(W_out, b_out), readout)``: one or more hidden pairs of a dense
        layer and any spiking ``neuron`` (LIF, ALIF, current-based LIF, your own), with recurrent
        weights or without; a linear ``readout`` with one decay (``snnjax.leaky_integrator(kappa)``).
      feedback: ``"symmetric"`` (:math:`B = W_\text{out}`), ``"random"`` (fixed :math:`B_l`,
        drawn at ``init`` as ``scale`` times a standard normal over :math:`\sqrt{C}`) or
        ``"learned"`` (estimated by forward mode, from zero; calls need a ``key``).
      scale: the random feedback's scale.
      rate: the learned feedback's update rate :math:`\eta \in (0, 1]`.

    Returns:
      A stateful :class:`snnjax.rules.Rule`: ``state = rule.init(params, key=key)``, then
      ``(loss, ys), grads, state = rule(params, xs, labels, state=state)`` for ``xs``
      ``[T, B, N_in]``; ``ys`` ``[T, B, C]``. The state holds the ``B_l`` (``FeedbackState``, one
      ``[N_l, C]`` matrix per hidden layer; for ``"symmetric"``, none). ``"learned"`` draws the
      noise of step ``t`` from ``fold_in(key, t)``, split into one key per layer when there are
      several.

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
        hidden, d_out, readout = _layers(loss_fn, params)
        _check_readout(readout, d_out.kernel.shape[1], d_out.kernel.dtype)
        classes, dtype = d_out.kernel.shape[1], d_out.kernel.dtype
        shapes = [(d.kernel.shape[1], classes) for d, _ in hidden]
        if feedback == "symmetric":
            return FeedbackState((), jnp.zeros((), jnp.int32))
        if learned:
            return FeedbackState(tuple(jnp.zeros(shape, dtype) for shape in shapes), jnp.zeros((), jnp.int32))
        if key is None:
            raise ValueError("eprop: feedback='random' needs init(..., key=key) to draw its fixed matrices.")
        keys = jax.random.split(key, len(shapes)) if len(shapes) > 1 else [key]  # one layer: the key itself
        matrices = tuple(
            scale * jax.random.normal(k, shape, dtype) / jnp.sqrt(classes) for k, shape in zip(keys, shapes)
        )
        return FeedbackState(matrices, jnp.zeros((), jnp.int32))

    def apply(state, params, xs, labels, key=None):
        if learned:
            key = forward_mode.require_key(key, "eprop(feedback='learned')")
        hidden, d_out, readout = _layers(loss_fn, params)
        steps, batch = xs.shape[0], xs.shape[1]
        dtype = xs.dtype
        widths = [d.kernel.shape[1] for d, _ in hidden]
        n, classes = widths[-1], d_out.kernel.shape[1]
        kappa, gain = (a[0] for a in _readout_jacobians(readout, classes, dtype, 0.0))  # checked at init
        cells = [cell_of(neuron) for _, neuron in hidden]
        s0 = [neuron.init((batch, w), dtype) for (_, neuron), w in zip(hidden, widths)]
        r0 = readout.init((batch, classes), dtype)
        fields = [read_fields(c, s, jnp.zeros((batch, w), dtype)) for (c, _), s, w in zip(cells, s0, widths)]
        # per layer, the presynaptic widths of W_l, b_l and W_rec (a bias has one input)
        pres = [
            [d.kernel.shape[0], 1] + ([w] if rec is not None else [])
            for (d, _), (_, rec), w in zip(hidden, cells, widths)
        ]
        traces0 = [[[jnp.zeros((batch, p, w), dtype)] * len(f) for p in ps] for ps, f, w in zip(pres, fields, widths)]
        filtered0 = [[jnp.zeros((batch, p, w), dtype) for p in ps] for ps, w in zip(pres, widths)]

        def forward(states, x_t, d_outs):
            """The hidden layers' step with additive perturbations of their outputs: the top spikes, and per
            layer its input, current and new state (the states of the step before held as they are)."""
            x, inputs, currents, new_states = x_t, [], [], []
            for (d, _), (cell, rec), s, do in zip(hidden, cells, states, d_outs):
                inputs.append(x)
                current = d(x) + (0.0 if rec is None else recurrent_input(s.z, rec))
                s_new, x = cell(s, current)
                x = x + do
                currents.append(current)
                new_states.append(s_new)
            return x, (inputs, currents, new_states)

        def body(carry, x_t):
            states, r, traces, filtered, z_bar, one_bar, grads, loss_sum, t, estimate = carry
            w_t = loss_fn.weight(t, steps, dtype)
            zeros = [jnp.zeros((batch, w), dtype) for w in widths]
            if learned:  # the readout's tangent along noise on every hidden layer's spikes, through the layers above
                r_dot, sums = estimate
                step_key = jax.random.fold_in(key, t)
                keys = jax.random.split(step_key, len(widths)) if len(widths) > 1 else [step_key]
                noise = [forward_mode.draw(k, (batch, w), dtype) for k, w in zip(keys, widths)]
                z, z_dot, (inputs, currents, new_states) = jax.jvp(
                    lambda d: forward(states, x_t, d), (zeros,), (noise,), has_aux=True
                )
                (r, y), (r_dot, y_dot) = jax.jvp(readout.step, (r, d_out(z)), (r_dot, z_dot @ d_out.kernel))
                estimate = (r_dot, [m + jnp.einsum("bn,bc->nc", u, y_dot) for m, u in zip(sums, noise)])
            elif feedback == "symmetric":
                z, through, (inputs, currents, new_states) = jax.vjp(
                    lambda d: forward(states, x_t, d), zeros, has_aux=True
                )
                r, y = readout.step(r, d_out(z))
            else:
                z, (inputs, currents, new_states) = forward(states, x_t, zeros)
                r, y = readout.step(r, d_out(z))
            loss, error = jax.value_and_grad(lambda y: w_t * jnp.mean(loss_fn.loss_t(y, labels)))(y)
            if feedback == "symmetric":  # dL_t/dz_l: through W_out and the layers above, in this step
                signals = through(error @ d_out.kernel.T)[0]
            else:
                signals = [error @ b.T for b in state.matrices]  # L_t [B, N_l], broadcast to every layer
            new_traces, new_filtered, new_grads = [], [], []
            for l, (cell, _) in enumerate(cells):
                _, _, d_state, d_current = local_jacobians(cell, states[l], currents[l], fields[l])
                pre = [inputs[l], jnp.ones((batch, 1), dtype)] + ([states[l].z] if len(pres[l]) > 2 else [])
                layer_traces, layer_filtered, layer_grads = [], [], []
                for eps, bar, p, g in zip(traces[l], filtered[l], pre, grads["hidden"][l]):
                    # e_t = d z_t / d W through the neuron's own state; then filtered with the readout's decay
                    e = (
                        sum(d[1][:, None, :] * eps[m] for m, d in enumerate(d_state))
                        + d_current[1][:, None, :] * p[..., None]
                    )
                    bar = kappa * bar + e
                    layer_grads.append(g + gain * jnp.einsum("bj,bij->ij", signals[l], bar))
                    layer_traces.append(
                        [
                            sum(d_state[m][0][f][:, None, :] * eps[m] for m in range(len(fields[l])))
                            + d_current[0][f][:, None, :] * p[..., None]
                            for f in fields[l]
                        ]
                    )
                    layer_filtered.append(bar)
                new_traces.append(layer_traces)
                new_filtered.append(layer_filtered)
                new_grads.append(layer_grads)
            z_bar, one_bar = kappa * z_bar + z, kappa * one_bar + 1.0
            out = grads["out"] + gain * z_bar.T @ error
            grads = dict(hidden=new_grads, out=out, out_bias=grads["out_bias"] + gain * one_bar * error.sum(0))
            carry = (new_states, r, new_traces, new_filtered, z_bar, one_bar, grads, loss_sum + loss, t + 1, estimate)
            return carry, y

        grads0 = dict(
            hidden=[[jnp.zeros((p, w), dtype) for p in ps] for ps, w in zip(pres, widths)],
            out=jnp.zeros((n, classes), dtype),
            out_bias=jnp.zeros((classes,), dtype),
        )
        learned0 = (jax.tree.map(jnp.zeros_like, r0), [jnp.zeros((w, classes), dtype) for w in widths])
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
            learned0 if learned else None,
        )
        (*_, grads, loss, _, estimate), ys = jax.lax.scan(body, carry0, xs)
        matrices = state.matrices
        if learned:
            # y' carries the readout's gain g; B estimates W_out, which the update scales by g
            matrices = tuple(fdfa_update(b, m / (steps * batch * gain), rate) for b, m in zip(matrices, estimate[1]))
        per_layer = [(g[0], g[1][0], *g[2:]) for g in grads["hidden"]] + [(grads["out"], grads["out_bias"])]
        return (loss, ys), to_params(loss_fn, params, per_layer), FeedbackState(matrices, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name=f"e-prop ({feedback})", loss_fn=loss_fn)
