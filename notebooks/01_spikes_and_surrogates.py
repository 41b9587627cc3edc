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
# # Exact spikes, injected surrogate gradients
#
# A spike is exactly Heaviside in the forward pass; its derivative is a chosen surrogate. This notebook checks both claims numerically and shows that forward mode (`jax.jvp`) and reverse mode (`jax.grad`) agree for every method except `custom_vjp`. Run it top to bottom; it needs only `pip install -e .` and Jupyter.

# %%
import jax
import jax.numpy as jnp

import snnjax
from snnjax import surrogates

# %% [markdown]
# ## The forward value is exact for any finite input
#
# The naive straight-through form `x + sg(H(x) - x)` loses the spike for large inputs in float32; the injection identity does not.

# %%
x = jnp.array([-1e30, -3e7, -1.0, -1e-30, 0.0, 1e-30, 1.0, 3e7, 1e30], jnp.float32)
naive = x + jax.lax.stop_gradient(snnjax.heaviside(x) - x)
print("input   ", x)
print("naive   ", naive)
print("snnjax  ", snnjax.spike(x))
assert set(map(float, snnjax.spike(x))) <= {0.0, 1.0}

# %% [markdown]
# ## The derivative is the surrogate, under `grad` and `jvp`

# %%
u = jnp.linspace(-1.0, 1.0, 5)
for name in ["fast_sigmoid", "sigmoid", "arctan", "triangle", "gaussian", "rectangular"]:
    s = surrogates.resolve(name)
    g = jax.vmap(jax.grad(lambda v, s=s: snnjax.spike(v, s)))(u)
    _, t = jax.jvp(lambda v, s=s: snnjax.spike(v, s), (u,), (jnp.ones_like(u),))
    assert jnp.allclose(g, s.derivative(u)) and jnp.allclose(t, g)
    print(f"{name:13s}", jnp.round(g, 4))

# %% [markdown]
# ## What the surrogates look like
#
# The forward pass is the same exact step for every surrogate; the backward pass is the surrogate's derivative, here as `jax.grad` of `snnjax.spike` computes it.

# %%
import matplotlib.pyplot as plt

v = jnp.linspace(-2.0, 2.0, 401)
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(v, snnjax.spike(v), color="black")
left.set(title="forward: exact Heaviside", xlabel="membrane potential - threshold", ylabel="spike")
for name in ["fast_sigmoid", "sigmoid", "arctan", "triangle", "gaussian", "multi_gaussian", "rectangular"]:
    right.plot(v, jax.vmap(jax.grad(lambda x, name=name: snnjax.spike(x, name)))(v), label=name)
right.set(title="backward: the surrogate derivative", xlabel="membrane potential - threshold")
right.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## Four ways to attach the surrogate
#
# `custom_vjp` is reverse-mode only: forward-mode rules (forward gradients, FDFA) need one of the other three, and the error says so.

# %%
for method in snnjax.METHODS:
    f = lambda v, method=method: jnp.sum(snnjax.spike(v, "fast_sigmoid", method=method))
    try:
        _, t = jax.jvp(f, (u,), (jnp.ones_like(u),))
        print(f"{method:11s} jvp = {float(t):.4f}   grad . 1 = {float(jnp.sum(jax.grad(f)(u))):.4f}")
    except TypeError as err:
        print(f"{method:11s} jvp fails: {str(err)[:90]}...")

# %% [markdown]
# ## A whole LIF simulation under `jvp` and `grad`
#
# The directional derivative of a scanned network along a tangent equals the gradient dotted with that tangent.

# %%
xs = jax.random.normal(jax.random.key(0), (50, 4, 8)) + 0.3
w = jax.random.normal(jax.random.key(1), (8, 8)) / 3
loss = lambda w: jnp.sum(snnjax.run(snnjax.lif(0.9), xs @ w)[1])
tangent = jax.random.normal(jax.random.key(2), w.shape)
_, directional = jax.jvp(loss, (w,), (tangent,))
print(float(directional), float(jnp.vdot(jax.grad(loss)(w), tangent)))
