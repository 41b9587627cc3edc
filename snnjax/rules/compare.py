r"""Gradient diagnostics: how close is a rule's gradient to the true one?

:func:`compare_gradients` evaluates a rule ``M`` times on the same parameters and batch, with
independent keys, beside a reference rule (by default :func:`snnjax.rules.bptt` of the same
loss, i.e. ``jax.grad``), and reports per parameter leaf ("layer", named by its path, such as
``layers.0.kernel``) and their mean over the layers (each layer counts once, whatever its size):

- cosine similarity :math:`\cos(\hat g, g)` and norm ratio :math:`\lVert\hat g\rVert/\lVert g\rVert`,
  mean and standard deviation over the draws;
- the estimator's bias, :math:`\lVert\bar g - g\rVert / \lVert g\rVert` with :math:`\bar g` the mean
  of the ``M`` estimates, beside the value an unbiased estimator would show from noise alone,
  :math:`\sqrt{\operatorname{tr}\Sigma / M}\,/\,\lVert g\rVert`, and the fraction of coordinates whose
  95 % confidence interval :math:`\bar g_i \pm 1.96\, s_i/\sqrt M` contains :math:`g_i` (about 0.95
  for an unbiased estimator; an exact rule, whose draws are all the reference up to float32
  rounding, covers every coordinate: the interval is widened by :math:`10^{-5}` of the
  coordinate's and the layer's scale);
- the variance, :math:`\operatorname{tr}\Sigma / \lVert g\rVert^2` (per-draw relative variance).

It works for every rule that follows the protocol, stateful ones included (their state is
passed in and the updated state discarded).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.rules.bptt import bptt

__all__ = ["Comparison", "compare_gradients"]

COLUMNS = ("cosine", "cosine_std", "norm_ratio", "bias", "bias_if_unbiased", "coverage", "variance")


class Comparison(NamedTuple):
    """The result of :func:`compare_gradients`: one row per parameter leaf, then ``"layer mean"``.

    Attributes:
      names: row names: the leaves' paths (``layers.0.kernel``), then ``"layer mean"``.
      cosine: cosine similarity with the reference, mean over draws ``[rows]``.
      cosine_std: its standard deviation over draws ``[rows]``.
      norm_ratio: mean of ``|estimate| / |reference|`` ``[rows]``.
      bias: ``|mean estimate - reference| / |reference|`` ``[rows]``.
      bias_if_unbiased: the ``bias`` expected from noise alone for an unbiased estimator ``[rows]``.
      coverage: fraction of coordinates whose 95 % interval contains the reference ``[rows]``.
      variance: total variance of one draw over ``|reference|^2`` ``[rows]``.
      draws: ``M``.
      rule: the compared rule's name.
      reference: the reference rule's name.
    """

    names: list[str]
    cosine: np.ndarray
    cosine_std: np.ndarray
    norm_ratio: np.ndarray
    bias: np.ndarray
    bias_if_unbiased: np.ndarray
    coverage: np.ndarray
    variance: np.ndarray
    draws: int
    rule: str
    reference: str

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row, for JSON or a data frame."""
        return [{"name": n, **{c: float(getattr(self, c)[i]) for c in COLUMNS}} for i, n in enumerate(self.names)]

    def table(self) -> str:
        """A plain-text table."""
        width = max(len(n) for n in self.names)
        head = (
            f"{self.rule} vs {self.reference}, {self.draws} draws\n"
            + f"{'':{width}s} "
            + " ".join(f"{c:>16s}" for c in COLUMNS)
        )
        lines = [f"{row['name']:{width}s} " + " ".join(f"{row[c]:16.4g}" for c in COLUMNS) for row in self.rows()]
        return "\n".join([head, *lines])

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | None = None) -> Any:
        """Bar charts of cosine (with std), norm ratio and bias per row; needs matplotlib.

        Args:
          path: save the figure there (PNG, PDF, ...) if given.

        Returns:
          The matplotlib figure.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("Comparison.plot needs matplotlib: pip install 'snnjax[plots]'.") from err
        fig, axes = plt.subplots(1, 3, figsize=(12, 0.5 * len(self.names) + 2), sharey=True)
        y = np.arange(len(self.names))
        axes[0].barh(y, self.cosine, xerr=self.cosine_std)
        axes[0].set_xlabel("cosine similarity")
        axes[1].barh(y, self.norm_ratio)
        axes[1].set_xlabel("norm ratio")
        axes[2].barh(y, self.bias, label="bias")
        axes[2].plot(self.bias_if_unbiased, y, "k|", markersize=12, label="noise level")
        axes[2].set_xlabel("relative bias")
        axes[2].legend()
        axes[0].set_yticks(y, self.names)
        fig.suptitle(f"{self.rule} vs {self.reference} ({self.draws} draws)")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig


def _leaf_names(tree: Any) -> list[str]:
    """``layers.0.kernel`` for the path ``['layers'][0]['kernel'].value``; ``params`` for a bare array."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        if parts and parts[-1] == "value":  # an NNX Variable's value
            parts = parts[:-1]
        names.append(".".join(parts) or "params")
    return names


def compare_gradients(
    rule: Any,
    params: Any,
    *args: Any,
    key: jax.Array,
    reference: Any = None,
    draws: int = 16,
    state: Any = None,
) -> Comparison:
    r"""Compare ``rule``'s gradient with ``reference``'s over ``draws`` independent keys.

    Args:
      rule: an :class:`snnjax.rules.Rule`.
      params: the parameters the rule is called with.
      *args: the rest of its arguments.
      key: split into ``draws`` keys for the rule (and one for the reference).
      reference: the rule taken as truth; by default ``snnjax.rules.bptt(rule.loss_fn)``.
      draws: ``M``, the number of estimates (evaluated with ``lax.map``, compiled once).
      state: the rule's state (default ``rule.init(params, *args, key=key)``; stateless rules ignore it).

    Returns:
      A :class:`Comparison` (data; ``.table()``, ``.plot()``).

    Raises:
      ValueError: if there is no reference (a rule without ``loss_fn``), ``draws < 2``, or the
        reference gradient is zero.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules, compare_gradients
      >>> rule = rules.forward_gradient(lambda w: (jnp.sum(jnp.sin(w)), None))
      >>> c = compare_gradients(rule, jnp.ones(4), key=jax.random.key(0), draws=8)
      >>> c.names, c.coverage.shape
      (['params', 'layer mean'], (2,))
    """
    if not isinstance(draws, int) or draws < 2:
        raise ValueError(f"compare_gradients: draws must be an int >= 2, got {draws!r}.")
    if reference is None:
        if getattr(rule, "loss_fn", None) is None:
            raise ValueError("compare_gradients: rule has no loss_fn; pass reference=<a rule> to compare against.")
        reference = bptt(rule.loss_fn)
    init_key, ref_key, *keys = jax.random.split(key, draws + 2)
    rule_state = rule.init(params, *args, key=init_key) if state is None else state

    @jax.jit
    def estimates(params, keys, *args):
        return jax.lax.map(lambda k: rule.apply(rule_state, params, *args, key=k)[1], keys)

    true = reference.apply(reference.init(params, *args, key=init_key), params, *args, key=ref_key)[1]
    est = estimates(params, jnp.stack(keys), *args)
    true_leaves = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(true)]
    est_leaves = [np.asarray(x, np.float64).reshape(draws, -1) for x in jax.tree.leaves(est)]
    if len(true_leaves) != len(est_leaves):
        raise ValueError("compare_gradients: the rule's and the reference's gradients have different structures.")
    if not any(np.any(g) for g in true_leaves):
        raise ValueError("compare_gradients: the reference gradient is zero, so relative measures are undefined.")
    stats = [_stats(g, e) for g, e in zip(true_leaves, est_leaves)]
    # The last row weighs each layer once, whatever its size (a layer whose reference is zero is left out).
    columns = {c: np.array([s[c] for s in stats]) for c in COLUMNS}
    columns = {c: np.append(v, np.nanmean(v)) for c, v in columns.items()}
    return Comparison(
        names=[*_leaf_names(true), "layer mean"], draws=draws, rule=rule.name, reference=reference.name, **columns
    )


def _stats(g: np.ndarray, e: np.ndarray) -> dict[str, float]:
    m = e.shape[0]
    g_norm = np.linalg.norm(g)
    e_norm = np.linalg.norm(e, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (e @ g) / (e_norm * g_norm)
        mean = e.mean(axis=0)
        var = e.var(axis=0, ddof=1)
        se = np.sqrt(var / m)
        rounding = 1e-5 * (np.abs(g) + np.sqrt(np.mean(g**2)))  # float32 rounding of an exact rule
        covered = np.abs(mean - g) <= 1.96 * se + rounding
        return {
            "cosine": float(np.mean(cos)),
            "cosine_std": float(np.std(cos)),
            "norm_ratio": float(np.mean(e_norm) / g_norm),
            "bias": float(np.linalg.norm(mean - g) / g_norm) if g_norm > 0 else float("nan"),
            "bias_if_unbiased": float(np.sqrt(var.sum() / m) / g_norm) if g_norm > 0 else float("nan"),
            "coverage": float(np.mean(covered)),
            "variance": float(var.sum() / g_norm**2) if g_norm > 0 else float("nan"),
        }
