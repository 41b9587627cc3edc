"""Checkpoints of a training run with orbax: the train state and a JSON record, per epoch.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed while saving leaves only complete checkpoints behind. :meth:`Checkpoints.restore_latest`
also falls back to the newest checkpoint that loads, should a complete one be damaged later.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jax

__all__ = ["Checkpoints"]


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
        """Save the train state pytree and a JSON-serialisable record after ``epoch``."""
        ocp = self._ocp
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record))
        self._manager.save(epoch, args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, epoch: int, like: Any) -> tuple[Any, dict]:
        """The state (with the structure and dtypes of ``like``) and record saved after ``epoch``."""
        ocp = self._ocp
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore())
        )
        return out["state"], dict(out["record"])

    def restore_latest(self, like: Any) -> tuple[int, Any, dict, list[str]] | None:
        """The newest checkpoint that loads: ``(epoch, state, record, problems)``, or ``None``.

        ``problems`` names every newer checkpoint that failed to load, and why; each is moved
        aside to ``damaged-<epoch>-<time>`` in the folder, so the run can save that epoch again.
        """
        problems = []
        for epoch in reversed(self.epochs()):
            try:
                state, record = self.restore(epoch, like)
            except Exception as error:  # a damaged checkpoint: note it and try the one before
                aside = self._directory / f"damaged-{epoch}-{int(time.time())}"
                (self._directory / str(epoch)).rename(aside)  # out of the way of the next save, kept for a look
                problems.append(
                    f"checkpoint {epoch} did not load ({type(error).__name__}: {str(error).splitlines()[0][:200]}), "
                    f"moved to {aside.name}"
                )
                continue
            self._manager.reload()
            return epoch, state, record, problems
        self._manager.reload()
        return None

    def close(self) -> None:
        self._manager.close()
