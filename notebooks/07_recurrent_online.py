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
# # Recurrent spiking networks online: e-prop, exact RTRL, truncated BPTT
#
# BPTT keeps every time step for its backward pass, so its memory grows with the sequence. This notebook trains a recurrent ALIF network on Randman with three rules that do not: e-prop (Bellec et al. 2020), truncated BPTT, and, as the exact reference, real-time recurrent learning in forward mode. Run it top to bottom; it needs only `pip install -e .`, Jupyter and matplotlib (about a minute on a laptop CPU).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import snnjax
from snnjax import compare_gradients, rules
from snnjax.datasets import randman

# %% [markdown]
# ## A stepped network and its loss
#
# The online rules need the network as a pure step: `rules.per_step_loss(network, loss_t)`, with `network(params)` a `snnjax.chain` and a loss at every step. This is e-prop's network: input weights, a recurrent adaptive LIF layer, output weights, a leaky-integrator readout.

# %%
UNITS, HIDDEN, CLASSES, STEPS = 20, 32, 4, 60


def network(p):
    return snnjax.chain(
        snnjax.dense(p["in"], p["b"]),
        snnjax.alif(0.9, 0.98, recurrent=p["rec"]),
        snnjax.dense(p["out"]),
        snnjax.leaky_integrator(0.8),
    )


loss_fn = rules.per_step_loss(network, optax.softmax_cross_entropy_with_integer_labels)
keys = jax.random.split(jax.random.key(0), 3)
params = {
    "in": jax.random.normal(keys[0], (UNITS, HIDDEN)) * 2.0 / np.sqrt(UNITS),
    "b": jnp.zeros(HIDDEN),
    "rec": jax.random.normal(keys[1], (HIDDEN, HIDDEN)) * 0.5 / np.sqrt(HIDDEN),
    "out": jax.random.normal(keys[2], (HIDDEN, CLASSES)) / np.sqrt(HIDDEN),
}

data = randman(num_classes=CLASSES, units=UNITS, steps=STEPS, samples_per_class=150, seed=1)
xs_all = jnp.swapaxes(jnp.asarray(data.spikes), 0, 1) * 3.0  # [T, N, units], time-major
train = xs_all[:, :480], jnp.asarray(data.labels[:480])
test = xs_all[:, 480:], jnp.asarray(data.labels[480:])
print("train", train[0].shape, "test", test[0].shape)

# %% [markdown]
# ## How far each rule is from the exact gradient
#
# RTRL carries `d state / d params` forward in the scan, one `jax.jvp` tangent per parameter: it is the exact gradient, online. e-prop keeps only each neuron's own history (its eligibility traces, the adaptation's included) and drops the paths through other neurons' recurrent spikes; truncated BPTT cuts the gradient every `k` steps.

# %%
built = {
    "BPTT": rules.bptt(loss_fn),
    "e-prop (symmetric)": rules.eprop(loss_fn),
    "e-prop (random)": rules.eprop(loss_fn, feedback="random"),
    "TBPTT (k=5)": rules.tbptt(loss_fn, 5),
}
batch = train[0][:, :32], train[1][:32]
for name, rule in {"RTRL": rules.rtrl(loss_fn), **built}.items():
    if name != "BPTT":
        c = compare_gradients(
            rule, params, *batch, key=jax.random.key(2), draws=2, state=rule.init(params, key=jax.random.key(3))
        )
        cosine = dict(zip(c.names, c.cosine))
        print(
            f"{name:20s} cosine to the exact gradient: recurrent kernel {cosine['rec']:.3f}, layer mean {cosine['layer mean']:.3f}"
        )

# %% [markdown]
# At initialisation this network spikes little, so the paths e-prop drops (through other neurons' recurrent spikes) carry almost nothing and symmetric e-prop is nearly exact; on a busier network it is not exact but stays close, far closer than truncation on ALIF (the table in `docs/benchmarks.md`). Random feedback starts unaligned, as in DFA.
#
# ## Training with each rule
#
# One jitted step serves every rule. The prediction is the class whose readout, summed over time, is largest.

# %%
optimizer = optax.adam(1e-2)


def accuracy(p, xs, labels):
    _, ys = loss_fn(p, xs, labels)
    return float(jnp.mean(jnp.argmax(ys.sum(0), -1) == labels))


def train_with(rule, epochs=12, size=32):
    p, opt_state = params, optimizer.init(params)
    state = rule.init(p, key=jax.random.key(3))

    @jax.jit
    def step(p, opt_state, state, x, y):
        (loss, _), grads, state = rule.apply(state, p, x, y, key=None)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, state, loss

    curve = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(train[1].shape[0])
        for i in range(0, len(order) - size + 1, size):
            idx = order[i : i + size]
            p, opt_state, state, _ = step(p, opt_state, state, train[0][:, idx], train[1][idx])
        curve.append(accuracy(p, *test))
    return curve


curves = {name: train_with(rule) for name, rule in built.items()}
for name, curve in curves.items():
    print(f"{name:20s} test accuracy per epoch {[round(a, 2) for a in curve]}")

# %% [markdown]
# ## Accuracy, and memory against the sequence length
#
# XLA's temporary memory for one gradient, at two lengths: BPTT's grows with T, the online rules' does not.

# %%
memory = {}
for name, rule in {**built, "RTRL": rules.rtrl(loss_fn)}.items():
    state = rule.init(params, key=jax.random.key(3))
    row = []
    for steps in (100, 800):
        x = jnp.zeros((steps, 32, UNITS))
        compiled = jax.jit(rule.apply).lower(state, params, x, batch[1]).compile()
        row.append(compiled.memory_analysis().temp_size_in_bytes / 2**20)
    memory[name] = row

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
for name, curve in curves.items():
    left.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
left.axhline(1 / CLASSES, color="gray", ls=":", label="chance")
left.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.05), title="recurrent ALIF on Randman")
left.legend(fontsize=7)
names = list(memory)
for i, steps in enumerate((100, 800)):
    right.bar(np.arange(len(names)) + 0.4 * i, [memory[n][i] for n in names], 0.4, label=f"T = {steps}")
right.set_xticks(np.arange(len(names)) + 0.2, names, rotation=20, ha="right", fontsize=8)
right.set(ylabel="temporary memory (MiB)", title="one gradient, B = 32")
right.legend()
fig.tight_layout()
plt.show()
