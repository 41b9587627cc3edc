r"""Data parallelism with JAX's own SPMD machinery: a device mesh and ``NamedSharding``.

A training step runs on several devices by *placing* its arrays, not by rewriting it: the
batch is split along its first axis over the mesh axis ``"batch"``, the parameters and the
optimiser and rule states are replicated (or, for large layers, split along one axis, as in
ZeRO/FSDP), and ``jax.jit`` compiles one program for all devices, inserting the collectives
(the all-reduce of a batch mean, the all-gather of a split weight) where the data needs them.
Every rule works unchanged, and the result is the single-device result up to the order of
floating-point sums.

On one host the mesh is built from ``jax.devices()``; on several hosts, call
``jax.distributed.initialize()`` first on every host (see the multi-device how-to), after
which ``jax.devices()`` lists every host's devices and :func:`put_batch` assembles the global
batch from what each host holds. Without an accelerator, ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(set before JAX is imported) gives 8 CPU devices that share the machine's cores: good for
testing a set-up, not for speed.

Examples:
  >>> import jax, numpy as np
  >>> from snnjax import sharding
  >>> mesh = sharding.mesh(1)
  >>> x = sharding.put_batch(np.ones((4, 3), np.float32), mesh)
  >>> x.shape, x.sharding.spec
  ((4, 3), P('batch',))
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "AXIS",
    "batch_sharding",
    "collective_bytes",
    "constrain_batch",
    "constrain_state",
    "initialize",
    "mesh",
    "put_batch",
    "put_state",
    "simulate_cpu_devices",
    "state_shardings",
]

AXIS = "batch"
_SIMULATE = "XLA_FLAGS=--xla_force_host_platform_device_count={n}"


def mesh(devices: int | None = None, *, axis: str = AXIS) -> Mesh:
    """A one-dimensional mesh over the first ``devices`` of ``jax.devices()`` (all by default).

    Args:
      devices: how many devices; ``None`` for all of them (every host's, after
        ``jax.distributed.initialize``).
      axis: the mesh axis name that the batch is split along.

    Raises:
      ValueError: for fewer than 1 or more devices than there are, with how to simulate
        CPU devices.

    Examples:
      >>> from snnjax import sharding
      >>> m = sharding.mesh(1)
      >>> dict(m.shape)
      {'batch': 1}
    """
    available = jax.devices()
    if devices is None:
        devices = len(available)
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ValueError(f"devices must be a positive integer, got {devices!r}.")
    if jax.process_count() > 1 and devices != len(available):
        raise ValueError(
            f"with {jax.process_count()} processes the mesh takes every device ({len(available)}), got "
            f"devices={devices}."
        )
    if devices > len(available):
        hint = (
            f"; to simulate {devices} CPU devices, set {_SIMULATE.format(n=devices)} before JAX is imported"
            if available[0].platform == "cpu"
            else ""
        )
        raise ValueError(f"asked for {devices} devices but JAX sees {len(available)} ({available[0].platform}){hint}.")
    return Mesh(np.array(available[:devices]), (axis,))


def simulate_cpu_devices(count: int) -> None:
    """Let JAX's CPU backend expose ``count`` devices, unless ``XLA_FLAGS`` already sets a count.

    Adds ``--xla_force_host_platform_device_count`` to ``XLA_FLAGS``; it takes effect only if
    JAX's backends have not started yet (before the first computation or ``jax.devices()``).
    It concerns only the CPU backend, so on a machine with accelerators it changes nothing.

    Examples:
      >>> import os
      >>> from snnjax import sharding
      >>> sharding.simulate_cpu_devices(8)  # before JAX's first computation
      >>> "xla_force_host_platform_device_count" in os.environ["XLA_FLAGS"]
      True
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Join a multi-host run: ``jax.distributed.initialize``, with CPU collectives (gloo) switched on.

    Call it first thing on every host, before any JAX computation. Without arguments JAX finds
    the cluster itself on SLURM, Open MPI and Cloud TPU; elsewhere pass the coordinator's
    ``host:port`` (process 0's machine; or set ``JAX_COORDINATOR_ADDRESS``), the number of
    processes and this process's index. Afterwards ``jax.devices()`` lists every host's
    devices, and :func:`mesh` spans them all.

    Args:
      coordinator: ``"host:port"`` of process 0.
      num_processes: how many processes take part (one per host, usually).
      process_id: this process's index, ``0 .. num_processes - 1``.

    Examples:
      On each of two hosts (``process_id`` 0 on the first, 1 on the second), before anything else:

      >>> from snnjax import sharding
      >>> sharding.initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # doctest: +SKIP
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices of several processes talk over gloo
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def batch_sharding(m: Mesh) -> NamedSharding:
    """The sharding that splits an array's first axis over the mesh (the rest replicated).

    Examples:
      >>> from snnjax import sharding
      >>> sharding.batch_sharding(sharding.mesh(1)).spec
      P('batch',)
    """
    return NamedSharding(m, PartitionSpec(m.axis_names[0]))


def _leaf_spec(leaf: Any, size: int, min_size: int | None, axis: str) -> PartitionSpec:
    shape = np.shape(leaf)
    if (
        min_size is None
        or int(np.prod(shape, dtype=np.int64)) < min_size
        or jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key)
    ):
        return PartitionSpec()
    divisible = [i for i, n in enumerate(shape) if n % size == 0]
    if not divisible:
        return PartitionSpec()
    split = max(divisible, key=lambda i: (shape[i], -i))  # the longest axis that divides evenly
    return PartitionSpec(*(axis if i == split else None for i in range(len(shape))))


def state_shardings(tree: Any, m: Mesh, *, min_size: int | None = None) -> Any:
    """A ``NamedSharding`` for every leaf of a train state: replicated, or split for large leaves.

    Args:
      tree: parameters, optimiser state, rule state (arrays or ``jax.ShapeDtypeStruct``).
      m: the mesh.
      min_size: leaves with at least this many elements are split over the mesh along their
        longest axis that the device count divides (replicated if none does); ``None``
        replicates everything. Adam's moments have their parameter's shape, so they are
        split the same way.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``tree``. It depends only on the
      shapes, so the step's outputs can be constrained to the shardings of its inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import sharding
      >>> s = sharding.state_shardings({"w": jnp.zeros((8, 3)), "b": jnp.zeros(3)}, sharding.mesh(1), min_size=10)
      >>> s["w"].spec, s["b"].spec
      (P('batch', None), P())
    """
    axis, size = m.axis_names[0], m.devices.size
    return jax.tree.map(lambda leaf: NamedSharding(m, _leaf_spec(leaf, size, min_size, axis)), tree)


def put_state(tree: Any, m: Mesh, *, min_size: int | None = None) -> Any:
    """``tree`` placed on the mesh as :func:`state_shardings` says (every host passes the same values).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import sharding
      >>> params = sharding.put_state({"w": jnp.ones((2, 3))}, sharding.mesh(1))
      >>> params["w"].sharding.spec
      P()
    """
    shardings = state_shardings(tree, m, min_size=min_size)
    return jax.tree.map(_put, tree, shardings)


def _put(leaf: Any, s: NamedSharding) -> jax.Array:
    """``leaf`` with sharding ``s``; a host value going to several hosts' devices is copied piecewise."""
    if s.is_fully_addressable or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
        return jax.device_put(leaf, s)
    host = np.asarray(leaf)  # the same on every host: each takes the pieces of its own devices
    return jax.make_array_from_callback(host.shape, s, lambda index: host[index])


def put_batch(array: np.ndarray | jax.Array, m: Mesh) -> jax.Array:
    """The global batch ``array`` ``[B, ...]`` split over the mesh along its first axis.

    Every host passes the same global batch (each copies out only the rows of its own
    devices), so this works on one host and on many. A batch that the device count does not
    divide is replicated instead (the last, partial batch of an evaluation pass).

    Examples:
      >>> import numpy as np
      >>> from snnjax import sharding
      >>> sharding.put_batch(np.arange(6), sharding.mesh(1)).sharding.spec
      P('batch',)
    """
    s = batch_sharding(m) if np.shape(array)[0] % m.devices.size == 0 else NamedSharding(m, PartitionSpec())
    return _put(array, s)


def constrain_batch(tree: Any, m: Mesh) -> Any:
    """Inside ``jit``: ask for the leaves of ``tree`` to be split along their first axis.

    Leaves whose first axis the device count does not divide are left to the compiler.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import sharding
      >>> m = sharding.mesh(1)
      >>> jax.jit(lambda x: sharding.constrain_batch(x * 2, m))(jnp.ones(4))
      Array([2., 2., 2., 2.], dtype=float32)
    """
    s = batch_sharding(m)
    return jax.tree.map(
        lambda leaf: (
            jax.lax.with_sharding_constraint(leaf, s) if leaf.ndim and leaf.shape[0] % m.devices.size == 0 else leaf
        ),
        tree,
    )


def constrain_state(tree: Any, m: Mesh, *, min_size: int | None = None) -> Any:
    """Inside ``jit``: ask for the shardings :func:`state_shardings` gives.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import sharding
      >>> m = sharding.mesh(1)
      >>> jax.jit(lambda p: sharding.constrain_state(p, m))({"w": jnp.ones(3)})["w"].sharding.spec
      P()
    """
    return jax.tree.map(jax.lax.with_sharding_constraint, tree, state_shardings(tree, m, min_size=min_size))


_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "f16": 2,
    "bf16": 2,
    "s16": 2,
    "u16": 2,
    "f32": 4,
    "s32": 4,
    "u32": 4,
    "f64": 8,
    "s64": 8,
    "u64": 8,
    "c64": 8,
    "c128": 16,
}
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_OP = re.compile(r"=\s*(.*?)\s+(" + "|".join(_COLLECTIVES) + r")(-start)?\(")
_SHAPE = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")


def collective_bytes(compiled: Any) -> dict[str, int]:
    """Bytes of the results of each kind of collective in a compiled program, from its HLO.

    A proxy for the traffic of one call: the sizes XLA's program states, per kind
    (``all-reduce``, ``all-gather``, ``reduce-scatter``, ``all-to-all``, ``collective-permute``).
    A ring all-reduce of :math:`S` bytes moves about :math:`2 S (N - 1) / N` bytes per device;
    collectives inside a loop count once.

    Args:
      compiled: ``jax.jit(f).lower(*args).compile()``, or its HLO text.

    Returns:
      ``{kind: bytes}`` for the kinds present, plus ``"total"``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import sharding
      >>> sharding.collective_bytes(jax.jit(lambda x: x * 2).lower(jnp.ones(3)).compile())
      {'total': 0}
    """
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    found: dict[str, int] = {}
    for line in text.splitlines():
        match = _OP.search(line)
        if match is None:
            continue
        shapes = _SHAPE.findall(match.group(1))
        if match.group(3) and match.group(2) == "all-gather" and len(shapes) > 1:
            shapes = shapes[len(shapes) // 2 :]  # an async all-gather's tuple holds (operands, results)
        size = sum(
            _BYTES[dtype] * int(np.prod([int(n) for n in dims.split(",") if n], dtype=np.int64))
            for dtype, dims in shapes
        )
        found[match.group(2)] = found.get(match.group(2), 0) + size
    return {**found, "total": sum(found.values())}
