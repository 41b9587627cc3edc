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
# # Forward gradients against `jax.grad`
#
# A forward gradient needs no backward pass: one `jax.jvp` along a random direction `v` gives the
# directional derivative `grad . v`, and `(grad . v) v` is an unbiased estimate of the gradient.
# This notebook measures, on a small spiking network, how close the weight-perturbed (FG-W) and
# activity-perturbed (FG-A) estimates come to the true gradient, and how their variance falls with
# the number of directions K. Runs in well under a minute on a CPU.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import compare_gradients, rules

# %% [markdown]
# ## A spiking network, as a plain loss
#
# Every rule is built from the loss alone, as `jax.value_and_grad` is. FG-A finds the layers'
# pre-activations (each `nnx.Linear`'s output, the input current of a neuron layer) in the
# traced loss and perturbs them there; it evaluates the loss one example at a time, so the loss
# is a mean over the batch and `aux` (the logits) keeps the batch axis.

# %%
rngs = nnx.Rngs(0)
net = snn.Sequential(
    nnx.Linear(20, 32, rngs=rngs), snn.LIF(32, beta=0.9), nnx.Linear(32, 4, rngs=rngs), snn.LeakyIntegrator(4)
)
graphdef, params, rest = nnx.split(net, nnx.Param, ...)


def loss_fn(params, xs, labels):
    logits = nnx.merge(graphdef, params, rest)(xs).max(axis=0)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits


xs = snnjax.encoders.rate(jax.random.key(1), jax.random.uniform(jax.random.key(2), (16, 20)), num_steps=25)
labels = jnp.arange(16) % 4

# %% [markdown]
# ## Cosine with the true gradient, per layer

# %%
for rule in (rules.forward_gradient(loss_fn, 1), rules.activity_forward_gradient(loss_fn, 1)):
    print(compare_gradients(rule, params, xs, labels, key=jax.random.key(3), draws=32).table(), "\n")

# %% [markdown]
# ## Cosine and variance against the number of directions K
#
# Averaging K directions divides the variance by about K, and the cosine to the true gradient
# grows with it; FG-A starts far better because it perturbs per example and
# per layer and takes each weight gradient through the layer's own Jacobian.

# %%
ks = [1, 4, 16]
builders = {"FG-W": rules.forward_gradient, "FG-A": rules.activity_forward_gradient}
variance, cosine = {name: [] for name in builders}, {name: [] for name in builders}
for k in ks:
    for name, build in builders.items():
        comparison = compare_gradients(build(loss_fn, k), params, xs, labels, key=jax.random.key(4), draws=16)
        variance[name].append(float(comparison.variance[-1]))  # the last row: the layer mean
        cosine[name].append(float(comparison.cosine[-1]))
fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
for name in builders:
    left.semilogx(ks, cosine[name], marker="o", label=name)
    right.loglog(ks, variance[name], marker="o", label=name)
left.set(xlabel="directions K", ylabel="cosine to jax.grad, layer mean", title="forward-gradient cosine")
right.set(xlabel="directions K", ylabel="variance / |grad|^2, layer mean", title="forward-gradient variance")
left.legend()
fig.tight_layout()
plt.show()
print("cosine", {name: [round(v, 3) for v in values] for name, values in cosine.items()})
print("variance", {name: [round(v, 2) for v in values] for name, values in variance.items()})
