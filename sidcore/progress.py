"""Progress of long loops (training steps, decoded prompts): a tqdm bar on a terminal, log lines elsewhere.

On a TTY the bar shows done / total, rate and ETA; while a bar is open, sid's log records are written
above it (``tqdm.write``) so a progress line and an eval line never share a row. When stderr is not a
TTY (CI, ``nohup``, a TPU VM log file) there is no bar: one ``[sid] <desc> done/total ...`` log line
every ``log_every`` updates and at the end. ``SID_PROGRESS=bar|log|off`` forces a mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("sidcore.progress")

MODES = ("bar", "log", "off")


def progress_mode() -> str:
    """``bar`` on a TTY, ``log`` otherwise; ``SID_PROGRESS`` overrides (an unknown value: the default)."""
    forced = os.environ.get("SID_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    return "bar" if sys.stderr.isatty() else "log"


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"


class Progress:
    """One progress display; `update` adds done units and replaces the shown extra fields.

    Args:
        total: units to do (steps, prompts).
        desc: what is counted (``train``, ``decode``).
        unit: unit name for the rate (``step``, ``prompt``).
        initial: units already done (a resumed run).
        log_every: in log mode, one line per this many units (and at the end).
        enabled: False (not process 0) shows nothing.
        leave: keep the finished bar on screen (False for nested evals inside training).
    """

    def __init__(self, total: int, *, desc: str, unit: str, initial: int = 0, log_every: int = 1,
                 enabled: bool = True, leave: bool = True) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = self.initial = int(initial)
        self.log_every = max(1, int(log_every))
        self.mode = progress_mode() if enabled else "off"
        self.fields: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self._last_logged = self.done
        self._bar = None
        self._stack = contextlib.ExitStack()
        if self.mode == "bar":
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            try:
                sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except OSError:
                sized = False
            # a pseudo-terminal without a size (script, some CI runners) reads as 0 columns: use 100
            self._bar = tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit, leave=leave,
                             file=sys.stderr, dynamic_ncols=sized, ncols=None if sized else 100,
                             nrows=None if sized else 40, smoothing=0.1)
            sid_logger = logging.getLogger("sidcore")
            self._stack.enter_context(logging_redirect_tqdm(loggers=[sid_logger], tqdm_class=type(self._bar)))

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``train 40/200 (20%) 3.1 step/s eta 0:51 loss=2.31`` (the log-mode text)."""
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        eta_s = _fmt_seconds(eta) if eta == eta else "?"
        return f"{self.desc} {self.done}/{self.total} ({pct:.0f}%) {rate:.3g} {self.unit}/s eta {eta_s} {extra}".rstrip()

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in fields.items()})
        if self._bar is not None:
            if self.fields:
                self._bar.set_postfix(self.fields, refresh=False)
            self._bar.update(n)
        elif self.mode == "log":
            if self.done - self._last_logged >= self.log_every or self.done >= self.total \
                    or self._last_logged == self.initial:
                self._last_logged = self.done
                log.info("%s", self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._stack.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
