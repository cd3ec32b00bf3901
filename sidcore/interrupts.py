"""SIGTERM / SIGINT outside the training loop: stop at once, say so, exit 75.

`install` (called by ``sid``'s entry point) turns both signals into `Interrupted`, a
`BaseException` so that no ``except Exception`` on the way can swallow it; the signal is also
remembered, so a command that somehow ran on after it still ends with exit 75, never 0
(`received`). Inside the training loops `sidcore.train.loop.StopFlag` takes the signals over for
the length of the loop (finish the step, write ``last``, `Preempted`) and hands them back after.
Every output sid writes is atomic (temp file + rename), so stopping anywhere leaves whole files
or none.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

EXIT_CODE = 75

_received: list[str] = []


class Interrupted(BaseException):
    """A SIGTERM/SIGINT arrived outside the training loop."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame

    def message(self) -> str:
        return (f"stopped by {self.signame}; nothing half-written is left (outputs are written whole or not "
                "at all); rerun the same command (a run resumes from its newest checkpoint)")


def _handle(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    _received.append(name)
    raise Interrupted(name)


def install() -> None:
    """Route SIGTERM and SIGINT to `Interrupted` (main thread only; elsewhere a no-op)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, _handle)
        except ValueError:  # not the main thread
            return


def received() -> str | None:
    """The first signal that arrived, if any."""
    return _received[0] if _received else None


def check() -> None:
    """Raise `Interrupted` if a signal arrived and was swallowed on the way (called between phases)."""
    if _received:
        raise Interrupted(_received[0])


def exit_now() -> None:
    """Exit 75 without interpreter teardown: the stack has unwound (every ``finally`` ran, every
    file is whole), but a signal that landed inside a native library's start-up can leave its
    threads in a state whose teardown crashes (seen: SIGINT during JAX start-up, exit 139)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CODE)
