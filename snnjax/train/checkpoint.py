"""Checkpoints of a training run with orbax: the train state and a JSON record, per epoch.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed while saving leaves only complete checkpoints behind. Each record also holds the shape
and dtype of every array and a SHA-256 checksum of their bytes, so that on resume
(:meth:`Checkpoints.restore_latest`) three faults are told apart:

- **damaged**: orbax cannot read it (a file missing or unreadable);
- **corrupted**: it reads, but its bytes no longer match the checksum, or it holds NaN or
  infinite values;
- **mismatched**: it was saved from another model (another ``--hidden``, say); this is a
  configuration error, not damage, and is raised as :class:`CheckpointMismatch` at once.

A damaged or corrupted newest checkpoint is skipped with a note and the one before is used;
when none loads, :class:`NoCheckpointLoads` is raised and nothing is moved or deleted.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CheckpointMismatch", "Checkpoints", "NoCheckpointLoads", "Restored", "fingerprint", "layout"]


class CheckpointMismatch(ValueError):
    """A checkpoint holds arrays of other shapes or structure than the model it is restored into."""


class NoCheckpointLoads(ValueError):
    """Checkpoints exist but none loads; the message has one line per checkpoint and why."""


class Restored(NamedTuple):
    """What :meth:`Checkpoints.restore_latest` found.

    Attributes:
      epoch: the epoch of the checkpoint restored.
      state: the train state.
      record: the JSON record saved with it (without the checksum and layout).
      problems: one line for each newer checkpoint that was skipped, and why.
    """

    epoch: int
    state: Any
    record: dict
    problems: list[str]


def _host_arrays(tree: Any) -> list[tuple[str, np.ndarray]]:
    """``(path, array)`` for every leaf, PRNG keys as their raw ``uint32`` data."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append((jax.tree_util.keystr(path), np.asarray(jax.device_get(leaf))))
    return out


def layout(tree: Any) -> dict[str, list]:
    """``{path: [shape, dtype]}`` of every array leaf of ``tree`` (arrays or ``ShapeDtypeStruct``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train.checkpoint import layout
      >>> layout({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
      {"['b']": [[3], 'float32'], "['w']": [[2, 3], 'float32']}
    """
    return {
        jax.tree_util.keystr(path): [list(jnp.shape(leaf)), str(jnp.result_type(leaf))]
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def fingerprint(tree: Any) -> str | None:
    """SHA-256 over every leaf's path, shape, dtype and bytes; ``None`` where a leaf is not held
    whole by this process (arrays split over several hosts are not checksummed).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train.checkpoint import fingerprint
      >>> fingerprint({"w": jnp.ones(2)}) == fingerprint({"w": jnp.ones(2)}) != fingerprint({"w": jnp.zeros(2)})
      True
    """
    if any(isinstance(leaf, jax.Array) and not leaf.is_fully_addressable for leaf in jax.tree.leaves(tree)):
        return None
    return _digest(_host_arrays(tree))


def _digest(arrays: list[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over ``(path, array)`` pairs: each path, shape, dtype and the bytes."""
    digest = hashlib.sha256()
    for path, array in arrays:
        digest.update(f"{path}|{array.shape}|{array.dtype}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _mismatch(saved: dict[str, list], wanted: dict[str, list]) -> str | None:
    """The first difference between two layouts in words (the shortest path first: parameters
    before their optimiser moments), and how many more there are; or ``None``."""
    differences = []
    for path in sorted(set(saved) | set(wanted), key=lambda path: (len(path), path)):
        if path not in wanted:
            differences.append(f"it holds {path}, which this model has not")
        elif path not in saved:
            differences.append(f"it lacks {path}, which this model has")
        elif saved[path] != wanted[path]:
            (s_shape, s_dtype), (w_shape, w_dtype) = saved[path], wanted[path]
            differences.append(f"{path} is {s_dtype}{tuple(s_shape)} there but {w_dtype}{tuple(w_shape)} in this model")
    if not differences:
        return None
    more = len(differences) - 1
    return differences[0] + (f" ({more} more array{'s' * (more > 1)} differ{'s' * (more == 1)})" if more else "")


@contextlib.contextmanager
def _quiet():
    """Silence the tracebacks orbax's coroutines log when a damaged checkpoint fails to load
    (the failure is reported once, as a note or an error, by :meth:`Checkpoints.restore_latest`)."""
    loggers = [logging.getLogger(name) for name in ("asyncio", "absl")]
    levels = [logger.level for logger in loggers]
    stderr, unraisable = sys.stderr, sys.unraisablehook  # where reads still in flight report a closed event loop

    def hook(report):
        if not (isinstance(report.exc_value, RuntimeError) and "Event loop is closed" in str(report.exc_value)):
            unraisable(report)

    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    sys.stderr, sys.unraisablehook = io.StringIO(), hook
    try:
        yield
    except Exception:
        time.sleep(0.2)  # let the reads still in flight finish while their complaints are silenced
        raise
    finally:
        gc.collect()  # failed futures log when collected: let them do so now, unheard
        sys.stderr, sys.unraisablehook = stderr, unraisable
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__


class Checkpoints:
    """The checkpoints of one run, numbered by epoch.

    Args:
      directory: the folder (created if missing).
      keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        import orbax.checkpoint as ocp  # heavy; only runs that checkpoint pay for it

        self._ocp = ocp
        self._directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self._directory, options=options)

    def epochs(self) -> list[int]:
        """The epochs with a complete checkpoint, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state: Any, record: dict) -> None:
        """Save the train state pytree and a JSON-serialisable record after ``epoch``; the record
        is stored with the state's :func:`layout` and :func:`fingerprint`."""
        ocp = self._ocp
        record = {**record, "layout": layout(state), "checksum": fingerprint(state)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record))
        self._manager.save(epoch, args=args, force=True)
        self._manager.wait_until_finished()

    def record(self, epoch: int) -> dict:
        """The JSON record saved after ``epoch`` (its layout and checksum included)."""
        out = self._manager.restore(epoch, args=self._ocp.args.Composite(record=self._ocp.args.JsonRestore()))
        return dict(out["record"])

    def restore(self, epoch: int, like: Any) -> tuple[Any, dict]:
        """The state (with the structure and dtypes of ``like``) and record saved after ``epoch``,
        checked: see :meth:`restore_latest` for the errors."""
        ocp = self._ocp
        try:
            with _quiet():
                record = self.record(epoch)
        except Exception as error:
            raise _Damaged(f"its record does not load ({_first_line(error)})") from None
        saved = record.pop("layout", None)
        checksum = record.pop("checksum", None)
        if saved is not None:
            difference = _mismatch(saved, layout(like))
            if difference:
                raise CheckpointMismatch(
                    f"checkpoint {epoch} in {self._directory} was saved from another model: {difference}. Resume with "
                    "the settings that made it, or start a new run (--overwrite, or another --out)."
                )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            with _quiet():
                out = self._manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as error:
            raise _Damaged(f"its arrays do not load ({_first_line(error)})") from None
        state = out["state"]
        arrays = _host_arrays(state)  # restored whole on this process: copied to the host once, for both checks
        if checksum is not None and _digest(arrays) != checksum:
            raise _Corrupted("its arrays do not match the checksum saved with them")
        bad = [p for p, a in arrays if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all()]
        if bad:
            raise _Corrupted(f"it holds NaN or infinite values in {bad[0]}")
        return state, record

    def restore_latest(self, like: Any) -> Restored | None:
        """The newest checkpoint that loads and checks out, or ``None`` if there is none at all.

        A newer checkpoint that is damaged or corrupted is skipped: its line in ``problems``
        says why, and it is moved aside to ``damaged-<epoch>-<time>`` (kept for a look) so the
        run can save that epoch again.

        Raises:
          CheckpointMismatch: a checkpoint was saved from another model (a configuration error).
          NoCheckpointLoads: there are checkpoints but none loads; one line each, nothing moved.
        """
        problems: list[tuple[int, str]] = []
        for epoch in reversed(self.epochs()):
            try:
                state, record = self.restore(epoch, like)
            except (_Damaged, _Corrupted) as error:
                problems.append((epoch, f"checkpoint {epoch} is {error.kind}: {error}"))
                continue
            notes = []
            for bad, line in problems:
                aside = self._directory / f"damaged-{bad}-{int(time.time())}"
                (self._directory / str(bad)).rename(aside)
                notes.append(f"{line}; skipped, moved to {aside.name}")
            self._manager.reload()
            return Restored(epoch, state, record, notes)
        if problems:
            lines = "\n".join(f"  {line}" for _, line in problems)
            raise NoCheckpointLoads(
                f"no checkpoint in {self._directory} loads, so the run cannot be resumed; nothing was moved or "
                f"deleted:\n{lines}"
            )
        return None

    def close(self) -> None:
        self._manager.close()


class _Damaged(Exception):
    kind = "damaged"


class _Corrupted(Exception):
    kind = "corrupted"
