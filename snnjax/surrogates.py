r"""Surrogate derivatives for the Heaviside spike.

A surrogate is the derivative the spike pretends to have. Each one here is a unit shape
:math:`\phi(u)` with :math:`\phi(0) = 1`, stretched along :math:`x` and scaled in height:

.. math::

    \sigma'(x) = \text{height}\cdot\phi(k x), \qquad
    \sigma(x) = \frac{\text{height}}{k}\,\Phi(k x), \qquad \Phi' = \phi,\ \Phi(-\infty) = 0

where :math:`k` is ``slope`` for the sigmoid-like shapes and ``1 / width`` for the bump-like
ones. So **height is always the peak value of the derivative** and the slope or width only
sets how far it reaches. Papers differ on this: SpyTorch and snnTorch use a peak of 1
(``height=1.0``, the default here); SuperSpike writes :math:`\beta / (1 + \beta |x|)^2`, a peak
of :math:`\beta` (``height=slope``); other authors normalise the derivative to integrate to 1,
so that :math:`\sigma` is a smooth step from 0 to 1 (``height=None``, which sets
``height = k / area``). ``height=None`` is the reference's own normalisation, and that is a unit
integral for every surrogate but one: :func:`multi_gaussian`, whose reference (Yin et al. 2021)
weights normalised densities by :math:`1 + h`, :math:`-h` and :math:`-h`, an area of
:math:`1 - h`; its ``height=None`` is that function exactly. Each factory's docstring gives its
shape, area and reference.

Every surrogate has a closed-form primitive :math:`\sigma` except :func:`custom` ones built
without it; the primitive is what :func:`snnjax.spike` differentiates with
``method="bypass"``.

Surrogates are hashable NamedTuples of static numbers, so they can be passed to jitted
functions as static arguments; their hyper-parameters are not trainable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "Surrogate",
    "fast_sigmoid",
    "sigmoid",
    "arctan",
    "triangle",
    "gaussian",
    "multi_gaussian",
    "rectangular",
    "exponential",
    "straight_through",
    "custom",
    "resolve",
    "NAMES",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


class Surrogate(NamedTuple):
    r"""A surrogate derivative :math:`\text{height}\cdot\phi(\text{slope}\cdot x)` and its primitive.

    Build one with a factory (:func:`fast_sigmoid`, :func:`gaussian`, ...) rather than by hand.

    Attributes:
      name: the surrogate's name, as accepted by :func:`resolve`.
      unit_derivative: :math:`\phi(u)`, with peak 1 at 0 for the built-in shapes.
      unit_primitive: :math:`\Phi(u)` with :math:`\Phi' = \phi`, or ``None`` if unknown.
      slope: :math:`k`, the scale of the argument (``1 / width`` for bump shapes).
      height: the factor on :math:`\phi`, the derivative's peak for built-in shapes.
      extra: further static parameters passed to the unit functions after ``u``.
    """

    name: str
    unit_derivative: Callable[..., jax.Array]
    unit_primitive: Callable[..., jax.Array] | None
    slope: float = 1.0
    height: float = 1.0
    extra: tuple = ()

    def derivative(self, x: ArrayLike) -> jax.Array:
        r"""The surrogate derivative :math:`\sigma'(x)`, elementwise, in ``x``'s dtype.

        Args:
          x: membrane potential minus threshold, any shape ``[...]``.

        Returns:
          :math:`\text{height}\cdot\phi(k x)`, same shape and dtype as ``x``.
        """
        x = jnp.asarray(x)
        u = x if self.slope == 1.0 else self.slope * x
        d = self.unit_derivative(u, *self.extra)
        return d if self.height == 1.0 else self.height * d

    @property
    def has_primitive(self) -> bool:
        """Whether a closed-form primitive exists (needed by ``method="bypass"``)."""
        return self.unit_primitive is not None

    def primitive(self, x: ArrayLike) -> jax.Array:
        r"""The smooth step :math:`\sigma(x) = (\text{height}/k)\,\Phi(k x)` whose derivative is the surrogate.

        Args:
          x: membrane potential minus threshold, any shape ``[...]``.

        Returns:
          :math:`\sigma(x)`, same shape and dtype as ``x``.

        Raises:
          ValueError: if this surrogate has no closed-form primitive.
        """
        if self.unit_primitive is None:
            raise ValueError(
                f"surrogate {self.name!r} has no primitive; give one to snnjax.surrogates.custom "
                "or use method='inject' or 'custom_jvp'."
            )
        x = jnp.asarray(x)
        u = x if self.slope == 1.0 else self.slope * x
        p = self.unit_primitive(u, *self.extra)
        scale = self.height / self.slope
        return p if scale == 1.0 else scale * p


def _positive(value: float, name: str) -> float:
    try:
        value = float(value)
    except TypeError as err:  # a traced or array value
        raise ValueError(f"{name} must be a positive Python number (surrogates are static), got {value!r}.") from err
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}.")
    return value


def _height(height: float | None, slope: float, area: float, name: str) -> float:
    if height is None:
        if not math.isfinite(area):
            raise ValueError(f"{name} has no finite area, so height=None (unit integral) is undefined; give a height.")
        return slope / area
    return _positive(height, "height")


# Unit shapes: phi(u) with phi(0) = 1, Phi(u) = integral of phi from -inf to u.


def _fast_sigmoid_phi(u):
    return 1.0 / (1.0 + jnp.abs(u)) ** 2


def _fast_sigmoid_Phi(u):
    # 1 + u / (1 + |u|); u is clipped so that u = +-inf (an overflowed slope * x) stays finite.
    big = jnp.finfo(u.dtype).max / 2
    u = jnp.clip(u, -big, big)
    return 1.0 + u / (1.0 + jnp.abs(u))


def fast_sigmoid(slope: float = 25.0, height: float | None = 1.0) -> Surrogate:
    r"""Fast sigmoid (SuperSpike, Zenke & Ganguli 2018): :math:`\text{height} / (1 + k|x|)^2`.

    Primitive :math:`(\text{height}/k)(1 + kx / (1 + k|x|))`; area of the unit shape 2.
    ``height=1`` is the SpyTorch / snnTorch convention (snnTorch's default slope is 25);
    SuperSpike's :math:`\beta / (1 + \beta|x|)^2` is ``fast_sigmoid(slope=beta, height=beta)``.

    Args:
      slope: :math:`k > 0`, the steepness in units of ``1 / x``.
      height: the derivative's peak at ``x = 0``; ``None`` for unit integral (``k / 2``).

    Examples:
      >>> from snnjax import surrogates
      >>> float(surrogates.fast_sigmoid(slope=10.0).derivative(0.1))
      0.25
    """
    k = _positive(slope, "slope")
    return Surrogate("fast_sigmoid", _fast_sigmoid_phi, _fast_sigmoid_Phi, k, _height(height, k, 2.0, "fast_sigmoid"))


def _sigmoid_phi(u):
    return 4.0 * jax.nn.sigmoid(u) * jax.nn.sigmoid(-u)


def _sigmoid_Phi(u):
    return 4.0 * jax.nn.sigmoid(u)


def sigmoid(slope: float = 25.0, height: float | None = 1.0) -> Surrogate:
    r"""Derivative of the logistic sigmoid: :math:`4\,\text{height}\;s(kx)\,s(-kx)`, :math:`s` the logistic.

    Primitive :math:`(4\,\text{height}/k)\,s(kx)`; area of the unit shape 4. The plain
    derivative of :math:`s(kx)` (snnTorch's ``sigmoid``, peak :math:`k/4`) is
    ``sigmoid(slope=k, height=None)``.

    Args:
      slope: :math:`k > 0`.
      height: the peak at ``x = 0``; ``None`` for unit integral (``k / 4``).

    Examples:
      >>> import jax, snnjax
      >>> s = snnjax.surrogates.sigmoid(slope=4.0)
      >>> round(float(jax.grad(lambda x: snnjax.spike(x, s))(0.5)), 4)  # 4 sigma(2) sigma(-2)
      0.42
    """
    k = _positive(slope, "slope")
    return Surrogate("sigmoid", _sigmoid_phi, _sigmoid_Phi, k, _height(height, k, 4.0, "sigmoid"))


def _arctan_phi(u):
    return 1.0 / (1.0 + u * u)


def _arctan_Phi(u):
    return jnp.arctan(u) + math.pi / 2


def arctan(slope: float = math.pi, height: float | None = 1.0) -> Surrogate:
    r"""Derivative of the arctangent: :math:`\text{height} / (1 + (kx)^2)`.

    Primitive :math:`(\text{height}/k)(\arctan(kx) + \pi/2)`; area :math:`\pi`. snnTorch's
    ``atan(alpha)`` is ``arctan(slope=pi * alpha / 2, height=alpha / 2)``; the default here is
    its ``alpha = 2``.

    Args:
      slope: :math:`k > 0`.
      height: the peak at ``x = 0``; ``None`` for unit integral (``k / pi``).

    Examples:
      >>> import jax, snnjax
      >>> s = snnjax.surrogates.arctan()  # slope pi: 1 / (1 + (pi x)^2)
      >>> round(float(jax.grad(lambda x: snnjax.spike(x, s))(1.0)), 4)
      0.092
    """
    k = _positive(slope, "slope")
    return Surrogate("arctan", _arctan_phi, _arctan_Phi, k, _height(height, k, math.pi, "arctan"))


def _triangle_phi(u):
    return jnp.maximum(0.0, 1.0 - jnp.abs(u))


def _triangle_Phi(u):
    c = jnp.clip(u, -1.0, 1.0)
    return jnp.where(c <= 0.0, 0.5 * (1.0 + c) ** 2, 1.0 - 0.5 * (1.0 - c) ** 2)


def triangle(width: float = 1.0, height: float | None = 1.0) -> Surrogate:
    r"""Triangle (Esser et al. 2016; Bellec et al. 2018): :math:`\text{height}\cdot\max(0, 1 - |x|/w)`.

    Zero outside :math:`|x| < w`; area of the unit shape 1. Bellec et al.'s
    :math:`0.3 \max(0, 1 - |x|)` is ``triangle(width=1.0, height=0.3)``.

    Args:
      width: :math:`w > 0`, the half-width of the support.
      height: the peak; ``None`` for unit integral (``1 / w``).

    Examples:
      >>> import jax, jax.numpy as jnp, snnjax
      >>> s = snnjax.surrogates.triangle(width=1.0)
      >>> jax.vmap(jax.grad(lambda x: snnjax.spike(x, s)))(jnp.array([-0.5, 0.0, 2.0]))
      Array([0.5, 1. , 0. ], dtype=float32)
    """
    w = _positive(width, "width")
    return Surrogate("triangle", _triangle_phi, _triangle_Phi, 1.0 / w, _height(height, 1.0 / w, 1.0, "triangle"))


def _gaussian_phi(u):
    return jnp.exp(-0.5 * u * u)


def _gaussian_Phi(u):
    return (_SQRT_2PI / 2) * (1.0 + jax.scipy.special.erf(u / math.sqrt(2.0)))


def gaussian(width: float = 1.0, height: float | None = 1.0) -> Surrogate:
    r"""Gaussian: :math:`\text{height}\cdot\exp(-x^2 / (2 w^2))`.

    Area of the unit shape :math:`\sqrt{2\pi}`. The FGI benchmark's :math:`\exp(-v^2/2)` is the
    default ``gaussian()``; a normal density of standard deviation :math:`w` is
    ``gaussian(width=w, height=None)``.

    Args:
      width: :math:`w > 0`, the standard deviation.
      height: the peak; ``None`` for unit integral.

    Examples:
      >>> import jax, snnjax
      >>> density = snnjax.surrogates.gaussian(height=None)  # the standard normal density
      >>> round(float(jax.grad(lambda x: snnjax.spike(x, density))(0.0)), 4)
      0.3989
    """
    w = _positive(width, "width")
    return Surrogate("gaussian", _gaussian_phi, _gaussian_Phi, 1.0 / w, _height(height, 1.0 / w, _SQRT_2PI, "gaussian"))


def _multi_gaussian_peak(h, s):
    return (1.0 + h) - 2.0 * (h / s) * math.exp(-0.5 / (s * s))


def _multi_gaussian_phi(u, h, s):
    side = jnp.exp(-0.5 * ((u - 1.0) / s) ** 2) + jnp.exp(-0.5 * ((u + 1.0) / s) ** 2)
    return ((1.0 + h) * jnp.exp(-0.5 * u * u) - (h / s) * side) / _multi_gaussian_peak(h, s)


def _multi_gaussian_Phi(u, h, s):
    def cdf(z):
        return 0.5 * (1.0 + jax.scipy.special.erf(z / math.sqrt(2.0)))

    total = (1.0 + h) * cdf(u) - h * cdf((u - 1.0) / s) - h * cdf((u + 1.0) / s)
    return (_SQRT_2PI / _multi_gaussian_peak(h, s)) * total


def multi_gaussian(width: float = 0.5, h: float = 0.15, s: float = 6.0, height: float | None = 1.0) -> Surrogate:
    r"""Multi-Gaussian (Yin, Corradi & Bohté 2021): a Gaussian with two broad negative side lobes.

    Yin et al.'s surrogate, with :math:`\mathcal N(x; \mu, \sigma)` the normal density
    :math:`e^{-(x - \mu)^2 / (2\sigma^2)} / (\sigma\sqrt{2\pi})`, is

    .. math::

        \sigma'_Y(x) = (1 + h)\,\mathcal N(x; 0, w) - h\,\mathcal N(x; w, s w) - h\,\mathcal N(x; -w, s w)

    (:math:`w = 0.5`, :math:`h = 0.15`, :math:`s = 6` in the paper). Its area is :math:`1 - h`
    (0.85), not 1, and its peak :math:`\sigma'_Y(0) = c / (w\sqrt{2\pi})` with
    :math:`c = 1 + h - (2h/s)\,e^{-1/(2s^2)}` (0.878 with the paper's values).

    ``height=None`` is :math:`\sigma'_Y` exactly: the one surrogate whose ``height=None`` is
    not a unit integral (for that, ``height`` :math:`= c / (w\sqrt{2\pi}(1 - h))`). A number
    ``height`` scales the same shape to that peak,
    :math:`\sigma'(x) = \text{height}\cdot\sigma'_Y(x) / \sigma'_Y(0)`, as for the other
    surrogates. The negative side lobes push potentials away from threshold. Area of the unit
    shape :math:`\sigma'_Y(wu) / \sigma'_Y(0)`: :math:`\sqrt{2\pi}(1 - h) / c`.

    Args:
      width: :math:`w > 0`, the central standard deviation (0.5 in Yin et al.).
      h: weight of the negative side lobes (0.15).
      s: the side lobes' width relative to ``width`` (6).
      height: the peak at ``x = 0``; ``None`` for Yin et al.'s function (peak
        :math:`c / (w\sqrt{2\pi})`, area :math:`1 - h`).

    Raises:
      ValueError: for non-positive parameters, or ``h`` and ``s`` that make :math:`c \le 0`
        (side lobes deeper than the centre).

    Examples:
      >>> import jax, snnjax
      >>> s = snnjax.surrogates.multi_gaussian()
      >>> round(float(jax.grad(lambda x: snnjax.spike(x, s))(0.0)), 4)
      1.0
      >>> yin = snnjax.surrogates.multi_gaussian(height=None)
      >>> round(float(yin.derivative(0.0)), 4), round(float(yin.primitive(1e4) - yin.primitive(-1e4)), 4)
      (0.8782, 0.85)
    """
    w = _positive(width, "width")
    h, s = _positive(h, "h"), _positive(s, "s")
    c = _multi_gaussian_peak(h, s)
    if c <= 0.0:
        raise ValueError(f"multi_gaussian with h={h}, s={s} has no positive peak at 0; use a smaller h.")
    return Surrogate(
        "multi_gaussian",
        _multi_gaussian_phi,
        _multi_gaussian_Phi,
        1.0 / w,
        c / (w * _SQRT_2PI) if height is None else _positive(height, "height"),
        (h, s),
    )


def _rectangular_phi(u):
    return (jnp.abs(u) <= 0.5).astype(u.dtype)


def _rectangular_Phi(u):
    return jnp.where(u < -0.5, 0.0, jnp.where(u > 0.5, 1.0, u + 0.5)).astype(u.dtype)


def rectangular(width: float = 1.0, height: float | None = 1.0) -> Surrogate:
    r"""Rectangular (boxcar, Wu et al. 2018): :math:`\text{height}\cdot\mathbb 1_{|x| \le w/2}`.

    Area of the unit shape 1. Wu et al.'s :math:`\frac{1}{a}\mathbb 1_{|x| < a/2}` is
    ``rectangular(width=a, height=None)``.

    Args:
      width: :math:`w > 0`, the full width of the box.
      height: the value inside the box; ``None`` for unit integral (``1 / w``).

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> box = snnjax.surrogates.rectangular(width=0.5, height=None)  # unit area: 2 on |x| < 0.25
      >>> box.derivative(jnp.array([-1.0, 0.0, 0.2]))
      Array([0., 2., 2.], dtype=float32)
    """
    w = _positive(width, "width")
    return Surrogate(
        "rectangular", _rectangular_phi, _rectangular_Phi, 1.0 / w, _height(height, 1.0 / w, 1.0, "rectangular")
    )


def _exponential_phi(u):
    return jnp.exp(-jnp.abs(u))


def _exponential_Phi(u):
    e = jnp.exp(-jnp.abs(u))
    return jnp.where(u < 0.0, e, 2.0 - e)


def exponential(slope: float = 1.0, height: float | None = 1.0) -> Surrogate:
    r"""Exponential (SLAYER, Shrestha & Orchard 2018): :math:`\text{height}\cdot\exp(-k|x|)`.

    Area of the unit shape 2.

    Args:
      slope: :math:`k > 0`, the decay rate.
      height: the peak; ``None`` for unit integral (``k / 2``).

    Examples:
      >>> import jax, snnjax
      >>> decay = snnjax.surrogates.exponential()  # exp(-|x|)
      >>> round(float(jax.grad(lambda x: snnjax.spike(x, decay))(-0.5)), 4)
      0.6065
    """
    k = _positive(slope, "slope")
    return Surrogate("exponential", _exponential_phi, _exponential_Phi, k, _height(height, k, 2.0, "exponential"))


def _straight_through_phi(u):
    return jnp.ones_like(u)


def _straight_through_Phi(u):
    return u


def straight_through(height: float = 1.0) -> Surrogate:
    r"""Straight-through (Bengio et al. 2013): a constant derivative ``height`` everywhere.

    Its primitive is :math:`\text{height}\cdot x`; it has no finite area, so ``height`` must be
    a number. For a straight-through derivative limited to a window use :func:`rectangular`.

    Args:
      height: the constant derivative.

    Examples:
      >>> import jax, jax.numpy as jnp, snnjax
      >>> s = snnjax.surrogates.straight_through()
      >>> jax.vmap(jax.grad(lambda x: snnjax.spike(x, s)))(jnp.array([-3.0, 0.0, 3.0]))
      Array([1., 1., 1.], dtype=float32)
    """
    return Surrogate(
        "straight_through",
        _straight_through_phi,
        _straight_through_Phi,
        1.0,
        _height(height, 1.0, math.inf, "straight_through"),
    )


def custom(
    derivative: Callable[[jax.Array], jax.Array],
    primitive: Callable[[jax.Array], jax.Array] | None = None,
    name: str = "custom",
) -> Surrogate:
    r"""A surrogate from any derivative function, optionally with its primitive.

    Args:
      derivative: ``x -> sigma'(x)``, elementwise, returning ``x``'s shape and dtype.
      primitive: ``x -> sigma(x)`` with ``sigma' = derivative``, needed only for
        ``method="bypass"``. Not checked against ``derivative``.
      name: a label for error messages and tables.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import surrogates
      >>> s = surrogates.custom(lambda x: 1.0 / (1.0 + 9.0 * x * x), name="narrow_arctan")
      >>> float(s.derivative(0.0))
      1.0
    """
    if not callable(derivative) or (primitive is not None and not callable(primitive)):
        raise ValueError("custom surrogate: derivative (and primitive, if given) must be callables x -> array.")
    return Surrogate(name, derivative, primitive, 1.0, 1.0)


_FACTORIES: dict[str, Callable[[], Surrogate]] = {
    "fast_sigmoid": fast_sigmoid,
    "superspike": fast_sigmoid,
    "sigmoid": sigmoid,
    "arctan": arctan,
    "atan": arctan,
    "triangle": triangle,
    "gaussian": gaussian,
    "multi_gaussian": multi_gaussian,
    "rectangular": rectangular,
    "boxcar": rectangular,
    "exponential": exponential,
    "straight_through": straight_through,
}

NAMES: tuple[str, ...] = tuple(sorted(_FACTORIES))
"""Names accepted wherever a surrogate is expected (with default parameters)."""

SurrogateLike = Surrogate | str


def resolve(surrogate: SurrogateLike) -> Surrogate:
    """Return ``surrogate`` itself, or the default surrogate of that name.

    Args:
      surrogate: a :class:`Surrogate` or one of :data:`NAMES`.

    Raises:
      ValueError: for an unknown name or a value of another type.

    Examples:
      >>> from snnjax import surrogates
      >>> surrogates.resolve("gaussian") == surrogates.gaussian()
      True
    """
    if isinstance(surrogate, Surrogate):
        return surrogate
    if isinstance(surrogate, str):
        if surrogate not in _FACTORIES:
            raise ValueError(f"unknown surrogate {surrogate!r}; expected one of {', '.join(NAMES)} or a Surrogate.")
        return _FACTORIES[surrogate]()
    raise ValueError(f"surrogate must be a name or a snnjax.surrogates.Surrogate, got {type(surrogate).__name__}.")
