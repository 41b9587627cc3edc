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
# # A network out to NIR and back
#
# NIR, the Neuromorphic Intermediate Representation, is how spiking networks move between simulators and neuromorphic hardware. This notebook trains a small recurrent network with snnjax, writes it as a NIR file, reads it back and checks that the spikes are the same. Run it top to bottom; it needs `pip install -e '.[nir]'`, Jupyter and matplotlib (seconds on a laptop CPU).

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import nir
import numpy as np
import optax
from flax import nnx

import snnjax.nir
import snnjax.nn as snn
from snnjax import rules

# %% [markdown]
# ## A recurrent network, trained a little
#
# NIR's neurons reset *to* a potential, so the spiking layers reset to zero (`reset="zero"`); snnjax's default, subtracting the threshold, has no NIR form.

# %%
rngs = nnx.Rngs(0)
model = snn.Sequential(
    nnx.Linear(6, 16, rngs=rngs),
    snn.LIF(16, beta=0.9, threshold=0.5, reset="zero", recurrent=True, rngs=rngs),
    nnx.Linear(16, 2, rngs=rngs),
    snn.LeakyIntegrator(2, kappa=0.8),
)
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
xs = (jax.random.uniform(jax.random.key(1), (40, 64, 6)) < jnp.linspace(0.05, 0.3, 6)[None, None]).astype(jnp.float32)
labels = (xs[:, :, :3].sum((0, 2)) > xs[:, :, 3:].sum((0, 2))).astype(jnp.int32)  # which half fires more


def loss_fn(p, xs, labels):
    logits = nnx.merge(graphdef, p, rest)(xs).max(axis=0)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits


rule, optimizer = rules.bptt(loss_fn), optax.adam(1e-2)
opt_state = optimizer.init(params)


@jax.jit
def step(params, opt_state):
    (loss, logits), grads = rule(params, xs, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, logits


for _ in range(100):
    params, opt_state, loss, logits = step(params, opt_state)
nnx.update(model, params)
print(f"loss {float(loss):.3f}, training accuracy {float(jnp.mean(jnp.argmax(logits, -1) == labels)):.2f}")

# %% [markdown]
# ## Export, write, read, load
#
# One snnjax step stands for `dt` seconds of forward Euler; the recurrent layer becomes a NIR subgraph whose neuron feeds its own spikes back through `w_rec`.

# %%
graph = snnjax.nir.export(model, dt=1e-3)
path = os.path.join(tempfile.mkdtemp(), "network.nir")
nir.write(path, graph)
print({name: type(node).__name__ for name, node in graph.nodes.items()})
print("recurrent layer:", {name: type(node).__name__ for name, node in graph.nodes["1"].nodes.items()})
print(
    "LIF tau (s):", float(graph.nodes["1"].nodes["neuron"].tau[0]), " r:", float(graph.nodes["1"].nodes["neuron"].r[0])
)
loaded = snnjax.nir.load(path, dt=1e-3)

# %% [markdown]
# ## The same network
#
# The hidden spikes of both, on a test input, and the readouts.

# %%
test = (jax.random.uniform(jax.random.key(2), (40, 1, 6)) < jnp.linspace(0.05, 0.3, 6)[None, None]).astype(jnp.float32)
spikes = [snnjax.run(m.layers[1].neuron(), m.layers[0](test))[1][:, 0] for m in (model, loaded)]
readouts = [m(test)[:, 0] for m in (model, loaded)]
print("identical hidden spikes:", bool(jnp.array_equal(*spikes)))
print("largest readout difference:", float(jnp.max(jnp.abs(readouts[0] - readouts[1]))))

fig, axes = plt.subplots(1, 3, figsize=(11, 2.8))
for ax, s, title in zip(axes[:2], spikes, ("snnjax", "after NIR")):
    t, n = np.nonzero(np.asarray(s))
    ax.scatter(t, n, s=4, c="k")
    ax.set(title=f"hidden spikes: {title}", xlabel="time step", ylabel="neuron")
for k, style in enumerate(("-", "--")):
    axes[2].plot(np.asarray(readouts[0][:, k]), style, label=f"snnjax, class {k}")
    axes[2].plot(np.asarray(readouts[1][:, k]), ":", lw=3, label=f"after NIR, class {k}")
axes[2].set(title="readout", xlabel="time step")
axes[2].legend(fontsize=6)
fig.tight_layout()
plt.show()
