# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Every rule on your own Flax model
#
# A convolutional spiking network with a recurrent LIF layer, written as a plain Flax NNX module with no hook for any rule. Each rule is built from the loss alone, exactly like `jax.value_and_grad`; this notebook trains the same model with all six and measures each gradient against `jax.grad`. Run it top to bottom; it needs only `pip install -e .`, Jupyter and matplotlib (about a minute on a laptop CPU).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import snnjax.nn as snn
from snnjax import compare_gradients, rules

# %% [markdown]
# ## The model: conv -> LIF -> pool -> linear -> recurrent LIF -> readout
#
# Nothing in it knows about learning rules. The rules find its weight products (`nnx.Conv`, `nnx.Linear`, the recurrent kernel), its hidden spikes and its output by tracing the loss.


# %%
class ConvSNN(nnx.Module):
    """[T, B, 12, 12, 1] frames -> [T, B, 3] readout membranes."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.lif = snn.LIF(8, beta=0.9, threshold=0.5)
        self.hidden = nnx.Linear(6 * 6 * 8, 32, rngs=rngs)
        self.recurrent = snn.LIF(32, beta=0.9, recurrent=True, rngs=rngs)
        self.out = nnx.Linear(32, 3, rngs=rngs)
        self.readout = snn.LeakyIntegrator(3, kappa=0.9)

    def __call__(self, xs):
        t, b = xs.shape[:2]
        _, s = self.lif.run(self.conv(xs))  # [T, B, 12, 12, 8]
        s = nnx.avg_pool(s.reshape(t * b, 12, 12, 8), (2, 2), (2, 2)).reshape(t, b, -1)
        _, z = self.recurrent.run(self.hidden(s))  # [T, B, 32]
        return self.readout.run(self.out(z))[1]  # [T, B, 3]


graphdef, params, rest = nnx.split(ConvSNN(nnx.Rngs(0)), nnx.Param, ...)


def loss_fn(params, xs, labels):
    logits = nnx.merge(graphdef, params, rest)(xs).max(axis=0)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits


# %% [markdown]
# ## A small task: which corner flickers?
#
# Each example is 8 frames of sparse noise in which one of three 4x4 patches (the class) flickers on with probability 0.6 per frame.


# %%
def make(key, n, steps=8):
    k1, k2, k3 = jax.random.split(key, 3)
    labels = jax.random.randint(k1, (n,), 0, 3)
    corners = jnp.zeros((3, 12, 12)).at[0, 1:5, 1:5].set(1).at[1, 1:5, 7:11].set(1).at[2, 7:11, 4:8].set(1)
    on = jax.random.uniform(k2, (steps, n, 1, 1)) < 0.6
    noise = jax.random.uniform(k3, (steps, n, 12, 12)) < 0.05
    frames = jnp.maximum(on * corners[labels][None], noise)
    return frames[..., None].astype(jnp.float32), labels  # [T, B, 12, 12, 1], [B]


train_x, train_y = make(jax.random.key(1), 512)
test_x, test_y = make(jax.random.key(2), 256)
fig, axes = plt.subplots(1, 3, figsize=(6, 2))
for c, ax in enumerate(axes):
    ax.imshow(train_x[:, int(jnp.argmax(train_y == c)), :, :, 0].mean(0), cmap="gray_r")
    ax.set(title=f"class {c}: mean frame", xticks=[], yticks=[])
plt.show()

# %% [markdown]
# ## One training step serves every rule
#
# Stateful rules (FA, DFA and FDFA keep fixed feedback matrices) are initialised with example arguments: one abstract trace of the loss finds the layers.

# %%
optimizer = optax.adam(2e-3)


def train(rule, epochs=4, batch=32):
    p, opt_state = params, optimizer.init(params)
    state = rule.init(p, train_x[:, :batch], train_y[:batch], key=jax.random.key(3))

    @jax.jit
    def step(p, opt_state, state, x, y, key):
        (loss, _), grads, state = rule.apply(state, p, x, y, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, state, loss

    accuracy = []
    for epoch in range(epochs):
        for i in range(0, 512, batch):
            x, y = train_x[:, i : i + batch], train_y[i : i + batch]
            p, opt_state, state, _ = step(p, opt_state, state, x, y, jax.random.key(100 * epoch + i))
        accuracy.append(float(jnp.mean(jnp.argmax(loss_fn(p, test_x, test_y)[1], -1) == test_y)))
    return accuracy


built = {
    "BPTT": rules.bptt(loss_fn),
    "FG-W": rules.forward_gradient(loss_fn),
    "FG-A": rules.activity_forward_gradient(loss_fn),
    "FA": rules.fa(loss_fn),
    "DFA": rules.dfa(loss_fn),
    "FDFA": rules.fdfa(loss_fn),
}
curves = {name: train(rule) for name, rule in built.items()}
for name, accuracy in curves.items():
    print(f"{name:5s} test accuracy per epoch {[round(a, 3) for a in accuracy]}")

# %% [markdown]
# FDFA, which estimates the output-to-hidden Jacobian with `jax.jvp`, keeps pace with BPTT; FA and DFA get there with fixed random feedback. The weight-perturbed forward gradient with one direction barely moves in four epochs: its variance grows with the number of parameters (about 10,000 here; see the forward-gradient tutorial), which is why Ren et al. perturb activities instead, as FG-A does.
#
# ## How far each rule is from the true gradient
#
# `compare_gradients` draws each rule's gradient on one batch and compares it with `jax.grad` of the same loss, layer by layer. BPTT is the reference (cosine 1); FA, DFA and FDFA are biased by design and are judged by their alignment; FG-W and FG-A are unbiased but noisy with one direction.

# %%
x, y = train_x[:, :32], train_y[:32]
cosines = {}
for name, rule in built.items():
    if name != "BPTT":
        comparison = compare_gradients(rule, params, x, y, key=jax.random.key(4), draws=4)
        cosines[name] = dict(zip(comparison.names, comparison.cosine))
layers = list(next(iter(cosines.values())))  # each parameter, then the layer mean

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
for name, accuracy in curves.items():
    left.plot(range(1, len(accuracy) + 1), accuracy, marker="o", label=name)
left.axhline(1 / 3, color="gray", ls=":", label="chance")
left.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.05), title="the same model, six rules")
left.legend(fontsize=7, ncol=2)
width = 0.8 / len(cosines)
for i, (name, cosine) in enumerate(cosines.items()):
    colour = f"C{list(built).index(name)}"  # the same colour as on the left
    right.bar(np.arange(len(layers)) + i * width, [cosine[layer] for layer in layers], width, color=colour, label=name)
right.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, layers, rotation=30, ha="right", fontsize=7)
right.set(ylabel="cosine to jax.grad", title="each layer's gradient at initialisation")
right.legend(fontsize=7)
fig.tight_layout()
plt.show()
