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
# gradient as the offline one where they take the error at the same place. (SFDFA, the spike-time
# version, is a later rule.)

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
#
# The network is an ordinary NNX model and the loss a plain function of its parameters: every
# rule is built from the loss alone and finds the layers in it by itself.

# %%
train = load("randman", "train", num_classes=3, units=20, steps=40, samples_per_class=200)


def network(kappa):
    rngs = nnx.Rngs(0)
    return snn.Sequential(
        nnx.Linear(20, 48, rngs=rngs),
        snn.LIF(48, beta=0.9),
        nnx.Linear(48, 3, rngs=rngs),
        snn.LeakyIntegrator(3, kappa=kappa),
    )


net = network(0.9)
graphdef, params, rest = nnx.split(net, nnx.Param, ...)


def loss_fn(params, xs, labels):
    y = nnx.merge(graphdef, params, rest)(xs)  # [T, B, 3]
    losses = jax.vmap(optax.softmax_cross_entropy_with_integer_labels, in_axes=(0, None))(y, labels)
    return losses.mean(), y.mean(axis=0)


def angle(a, b):
    return float(jnp.degrees(jnp.arccos(jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))))


# %% [markdown]
# ## Train with DFA and FDFA
#
# DFA takes the error at the output layer's pre-activation, the readout's input current
# `o_t = h_t W_out + b`, and `B` (`[48, 3]`) stands in for the Jacobian `d o_t / d h_t`, which is
# `W_out` itself. FDFA estimates it from forward-mode perturbations of the hidden spikes.

# %%
xs0, y0 = next(batches(train, 32, seed=0))
curves = {}
for name in ("dfa", "fdfa"):
    rule = rules.dfa(loss_fn) if name == "dfa" else rules.fdfa(loss_fn, rate=0.05)
    p, opt = params, optax.adam(3e-3)
    opt_state, state = opt.init(p), rule.init(p, xs0, y0, key=jax.random.key(1))

    @jax.jit
    def step(p, opt_state, state, x, y, key, rule=rule, opt=opt):
        (_, logits), grads, state = rule.apply(state, p, x, y, key=key)
        updates, opt_state = opt.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, state, logits

    angles, accuracy = [], []
    for epoch in range(4):
        for i, (x, y) in enumerate(batches(train, 32, seed=0, epoch=epoch)):
            p, opt_state, state, logits = step(p, opt_state, state, x, y, jax.random.key(100 * epoch + i))
        angles.append(angle(state.matrices[0], p["layers"][2]["kernel"][...]))
        accuracy.append(float(jnp.mean(jnp.argmax(logits, -1) == y)))
    curves[name] = (angles, accuracy)
    print(name, "angle to the Jacobian per epoch:", [round(a) for a in angles], "batch accuracy:", accuracy[-1])

fig, ax = plt.subplots(figsize=(4, 3))
for name, (angles, _) in curves.items():
    ax.plot(angles, marker="o", label=name)
ax.set(xlabel="epoch", ylabel="angle of B to do/dh (degrees)", ylim=(0, 100))
ax.legend()
plt.show()

# %% [markdown]
# ## Online equals offline, with memory flat in T
#
# `rules.online_dfa` runs the network once forward in time and carries each synapse's eligibility
# trace `d state / d W` in the scan; for DFA, which cuts every path between layers, that is the
# whole gradient. It steps the network as a pure chain of dense synapses and neurons
# (`snn.network`), with a loss at every step (`rules.per_step_loss`): the same loss as `loss_fn`,
# and offline `rules.dfa` takes it as it is. Online, the error of step `t` is taken at the
# readout's output, the only error known at step `t`; offline DFA takes it at the readout's
# input, which through the readout's memory (`kappa = 0.9`) also carries the errors of later
# steps. Without that memory (`kappa = 0`) the two rules give the same gradient.

# %%
loss_t = optax.softmax_cross_entropy_with_integer_labels
for kappa in (0.0, 0.9):
    model = network(kappa)
    stepped = rules.per_step_loss(snn.network(model), loss_t)
    p = nnx.state(model, nnx.Param)
    online, offline = rules.online_dfa(stepped), rules.dfa(stepped)
    state = online.init(p, xs0, y0, key=jax.random.key(1))
    g_online = online.apply(state, p, xs0, y0)[1]
    g_offline = offline.apply(state, p, xs0, y0)[1]
    difference = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g_online), jax.tree.leaves(g_offline)))
    print(f"readout kappa = {kappa}: max |online - offline| = {difference:.2e}")
