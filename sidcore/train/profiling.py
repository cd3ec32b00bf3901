"""``profile.steps=[start, stop]``: a `jax.profiler` trace of those steps, in ``<output_dir>/profile/``.

What a step is depends on the run mode: an SFT optimizer step (``train``, ``train_eval``), an RL
step (``rl``), or a decode batch (``eval``); steps count from 1, as the logs do, and both ends are
included. The run wraps itself in `session`; each loop calls `step(kind, i)` before its step ``i``
(one line, no object threaded through constructors; the decode loop counts on `step(kind)`). The trace starts before step ``start`` and
stops before step ``stop + 1`` (or when the run ends), so it holds the host work and the device
work of those steps: each loop reads its step's results back to the host before the next one.

The folder is TensorBoard's layout (``plugins/profile/<time>/<host>.xplane.pb``, for XProf or the
TensorBoard profile plugin) plus Perfetto traces (``<host>.trace.json.gz``, ``perfetto_trace.json.gz``: ui.perfetto.dev); each
process of a multi-process run writes under ``profile/process<i>/``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger(__name__)

__all__ = ["KIND_OF_MODE", "Profiler", "session", "step"]

#: Which loop's steps ``profile.steps`` counts in each run mode.
KIND_OF_MODE = {"train": "train", "train_eval": "train", "rl": "rl", "eval": "decode"}

_ACTIVE: contextvars.ContextVar[Profiler | None] = contextvars.ContextVar("sid_profiler", default=None)


@attrs.define(kw_only=True)
class Profiler:
    """Starts and stops one `jax.profiler` trace around steps ``start..stop`` of loop `kind`."""

    start: int
    stop: int
    folder: Path
    kind: str
    tracing: bool = False
    done: bool = False
    counted: int = 0  # steps announced without a number (decode batches)

    def step(self, kind: str, i: int | None = None) -> None:
        """Call before step `i` (1-based; None: the one after the last announced) of loop `kind` runs."""
        if kind != self.kind or self.done:
            return
        if i is None:
            i = self.counted = self.counted + 1
        if self.tracing and i > self.stop:
            self.close()
        elif not self.tracing and self.start <= i <= self.stop:
            import jax

            folder = self.folder
            if jax.process_count() > 1:
                folder = folder / f"process{jax.process_index()}"
            folder.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(folder), create_perfetto_trace=True)
            self.tracing = True
            log.info("profiling %s steps %d-%d into %s", kind, i, self.stop, folder)

    def close(self) -> None:
        """Stop the trace if it runs (the run ended inside the window, or the window is over)."""
        if self.tracing:
            import jax

            jax.profiler.stop_trace()
            self.tracing, self.done = False, True


@contextlib.contextmanager
def session(profile_cfg: Any, output_dir: str, run_mode: str) -> Iterator[Profiler | None]:
    """Make `step` trace ``profile_cfg.steps`` of this run (nothing when the list is empty)."""
    steps = list(getattr(profile_cfg, "steps", None) or [])
    if not steps:
        yield None
        return
    prof = Profiler(start=steps[0], stop=steps[1], folder=Path(output_dir) / "profile", kind=KIND_OF_MODE[run_mode])
    token = _ACTIVE.set(prof)
    try:
        yield prof
    finally:
        prof.close()
        _ACTIVE.reset(token)


def step(kind: str, i: int | None = None) -> None:
    """Tell the active profiler (if any) that step `i` (None: the next) of loop `kind` is about to run."""
    prof = _ACTIVE.get()
    if prof is not None:
        prof.step(kind, i)
