r"""Stateless layers that reshape feature maps over time: 2-D average pooling and flattening.

Both act on time-major feature maps ``[T, B, H, W, C]`` (channels last, as ``nnx.Conv`` writes
them) inside :class:`snnjax.nn.Sequential`, all ``T * B`` frames at once, and are the layers
:mod:`snnjax.nir` exports as NIR's ``AvgPool2d`` and ``Flatten``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["AvgPool2d", "Flatten"]


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"AvgPool2d: {name} must be an int or two ints, got {value!r}.")
    return pair  # type: ignore[return-value]


class AvgPool2d(nnx.Module):
    r"""Average pooling of ``[..., H, W, C]`` over ``kernel_size`` windows, zero padding counted (as PyTorch's).

    .. math:: y_{i,j,c} = \frac{1}{k_h k_w} \sum_{a < k_h,\, b < k_w} x_{s_h i + a - p_h,\; s_w j + b - p_w,\; c}

    Args:
      kernel_size: ``k`` or ``(k_h, k_w)``.
      stride: ``s``; default the kernel size.
      padding: ``p`` zeros on each side of each spatial axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4, 1)  # [T, B, H, W, C]
      >>> snn.AvgPool2d(2)(x)[0, 0, :, :, 0].tolist()
      [[2.5, 4.5], [10.5, 12.5]]
    """

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None, padding: int = 0
    ):
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(*self.kernel_size, *self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"AvgPool2d: kernel_size and stride must be >= 1 and padding >= 0, got {self.kernel_size}, "
                f"{self.stride}, {self.padding}."
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Pooled ``[..., H', W', C]`` of ``[..., H, W, C]`` (any leading axes)."""
        if x.ndim < 4:
            raise ValueError(f"AvgPool2d: x must be [..., H, W, C] with a leading batch axis, got shape {x.shape}.")
        frames = x.reshape(-1, *x.shape[-3:])
        pads = tuple((p, p) for p in self.padding)
        y = nnx.avg_pool(frames, self.kernel_size, self.stride, padding=pads, count_include_pad=True)
        return y.reshape(*x.shape[:-3], *y.shape[1:])


class Flatten(nnx.Module):
    """``[T, B, H, W, C] -> [T, B, H * W * C]``, channels last (NIR writes ``(C, H, W)`` order; :mod:`snnjax.nir`
    converts).

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> snn.Flatten()(jnp.zeros((5, 2, 3, 3, 4))).shape
      (5, 2, 36)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        """The time-major sequence with each frame flattened."""
        if x.ndim < 3:
            raise ValueError(f"Flatten: x must be time-major [T, B, ...], got shape {x.shape}.")
        return jnp.reshape(x, (*x.shape[:2], -1))
