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
# # A ternary-weight spiking network trained with straight-through estimators
#
# `snnjax.ste.ternary` maps weights to `{-s, 0, s}` (absmean scale `s`, as in the MatMul-free LM)
# in the forward pass and passes the gradient straight through, with the same stop-gradient
# identities as the spikes. Here a recurrent-free LIF network with ternary weights learns Randman
# next to the same network with float weights. Runs in about a minute on a CPU.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import snnjax
from snnjax import ste
from snnjax.datasets import batches, load

train = load("randman", "train", num_classes=4, units=30, steps=50, samples_per_class=250)
test = load("randman", "test", num_classes=4, units=30, steps=50, samples_per_class=250)
lif, readout = snnjax.lif(0.9, surrogate=snnjax.surrogates.fast_sigmoid(slope=10.0)), snnjax.leaky_integrator(0.9)


def forward(params, xs, quantise):
    q = ste.ternary if quantise else (lambda w: w)
    _, spikes = snnjax.run(lif, xs @ q(params["w1"]))
    _, v = snnjax.run(readout, spikes @ q(params["w2"]))
    return v, spikes


def loss_fn(params, xs, labels, quantise):
    v, _ = forward(params, xs, quantise)
    return snnjax.losses.max_membrane_cross_entropy(v, labels), v


# %% [markdown]
# ## Train both

# %%
k1, k2 = jax.random.split(jax.random.key(0))
init = {"w1": jax.random.normal(k1, (30, 64)) * 0.5, "w2": jax.random.normal(k2, (64, 4)) * 0.3}
history = {}
for quantise in (False, True):
    params, opt = init, optax.adam(5e-3)
    opt_state = opt.init(params)
    rule = snnjax.rules.bptt(lambda p, x, y, quantise=quantise: loss_fn(p, x, y, quantise))

    @jax.jit
    def step(params, opt_state, x, y, rule=rule, opt=opt):
        (loss, _), grads = rule(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    accuracies = []
    for epoch in range(8):
        for x, y in batches(train, 50, seed=0, epoch=epoch):
            params, opt_state, loss = step(params, opt_state, x, y)
        xt = jnp.swapaxes(jnp.asarray(test.inputs, jnp.float32), 0, 1)
        v, _ = forward(params, xt, quantise)
        accuracies.append(float(snnjax.losses.accuracy(v.max(axis=0), test.labels)))
    history["ternary" if quantise else "float"] = (accuracies, params)
    print("ternary" if quantise else "float", "test accuracy per epoch:", [round(a, 3) for a in accuracies])

# %% [markdown]
# ## Accuracy curves, the ternary weights, a raster

# %%
w = ste.ternary(history["ternary"][1]["w1"])
print("ternary levels of w1:", np.unique(np.round(np.asarray(w), 5)))
_, spikes = forward(history["ternary"][1], jnp.swapaxes(jnp.asarray(test.inputs[:1], jnp.float32), 0, 1), True)
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for name, (acc, _) in history.items():
    axes[0].plot(range(1, len(acc) + 1), acc, marker="o", label=name)
axes[0].set(xlabel="epoch", ylabel="test accuracy")
axes[0].legend()
t, n = np.nonzero(np.asarray(spikes[:, 0]))
axes[1].scatter(t, n, s=2, c="k")
axes[1].set(xlabel="time step", ylabel="hidden unit", title="ternary network, one test sample")
plt.show()
