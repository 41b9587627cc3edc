# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
# ---

# %% [markdown]
# # Feedback alignment, offline and online
#
# DFA sends the output error straight to every hidden layer through a fixed random matrix `B_l`;
# FDFA learns `B_l` as a forward-mode estimate of the output-to-layer Jacobian. This notebook trains
# a small spiking network with both, watches `B_l` align with the true Jacobian, and checks that the
# online rule (eligibility traces carried in the scan, memory independent of T) gives the same
# gradient as the offline one. (SFDFA, the spike-time version, is a later rule.)

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax
from flax import nnx

import snnjax.nn as snn
from snnjax import rules
from snnjax.datasets import batches, load

# %% [markdown]
# ## Data and network: Randman, a loss at every time step

# %%
train = load("randman", "train", num_classes=3, units=20, steps=40, samples_per_class=200)
rngs = nnx.Rngs(0)
net = snn.Sequential(
    nnx.Linear(20, 48, rngs=rngs),
    snn.LIF(48, beta=0.9),
    nnx.Linear(48, 3, rngs=rngs),
    snn.LeakyIntegrator(3, kappa=0.9),
)
graphdef, params, rest = nnx.split(net, nnx.Param, ...)


def model(params, xs, labels, route):
    y = nnx.merge(graphdef, params, rest)(xs, route=route)  # [T, B, 3]
    losses = jax.vmap(optax.softmax_cross_entropy_with_integer_labels, in_axes=(0, None))(y, labels)
    return losses.mean(axis=0), y.mean(axis=0)


def jacobian(params, xs, labels):
    """Mean same-step Jacobian of the output with respect to the hidden spikes, as [48, 3]."""
    from snnjax.rules.feedback import _Perturb

    def out(eps):
        route = _Perturb([eps[:, None, :]])
        model(params, xs, labels, route=route)
        return route.outputs[0].mean(axis=1)

    j = jax.jacrev(out)(jnp.zeros((xs.shape[0], 48)))  # [T, 3, T, 48]
    return jnp.mean(jnp.stack([j[t, :, t] for t in range(xs.shape[0])]), axis=0).T


def angle(a, b):
    return float(jnp.degrees(jnp.arccos(jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))))


# %% [markdown]
# ## Train with DFA and FDFA

# %%
xs0, y0 = next(batches(train, 32, seed=0))
curves = {}
for name in ("dfa", "fdfa"):
    rule = (
        rules.dfa(model, (xs0, y0), key=jax.random.key(1)) if name == "dfa" else rules.fdfa(model, (xs0, y0), rate=0.05)
    )
    p, opt = params, optax.adam(3e-3)
    opt_state, state = opt.init(p), rule.init(p)

    @jax.jit
    def step(p, opt_state, state, x, y, key, rule=rule, opt=opt):
        (_, logits), grads, state = rule.apply(state, p, x, y, key=key)
        updates, opt_state = opt.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, state, logits

    angles, accuracy = [], []
    for epoch in range(4):
        for i, (x, y) in enumerate(batches(train, 32, seed=0, epoch=epoch)):
            p, opt_state, state, logits = step(p, opt_state, state, x, y, jax.random.key(100 * epoch + i))
        angles.append(angle(state.matrices[0], jacobian(p, x, y)))
        accuracy.append(float(jnp.mean(jnp.argmax(logits, -1) == y)))
    curves[name] = (angles, accuracy)
    print(name, "angle to the Jacobian per epoch:", [round(a) for a in angles], "batch accuracy:", accuracy[-1])

fig, ax = plt.subplots(figsize=(4, 3))
for name, (angles, _) in curves.items():
    ax.plot(angles, marker="o", label=name)
ax.set(xlabel="epoch", ylabel="angle of B to dy/dh (degrees)", ylim=(0, 100))
ax.legend()
plt.show()

# %% [markdown]
# ## Online equals offline, with memory flat in T
#
# `rules.online_dfa` runs the network once forward in time and carries each synapse's eligibility
# trace `d state / d W` in the scan; for DFA, which cuts every path between layers, that is the
# whole gradient.

# %%
loss_t = optax.softmax_cross_entropy_with_integer_labels
online = rules.online_dfa(net, loss_t, key=jax.random.key(1))
offline = rules.dfa(model, (xs0, y0), key=jax.random.key(1))
state = online.init(params)
g_online = online.apply(state, params, xs0, y0)[1]
g_offline = offline.apply(state, params, xs0, y0)[1]
print(
    "max |online - offline| =",
    max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g_online), jax.tree.leaves(g_offline))),
)
