"""The process-group side of ``jax.distributed`` for multi-process runs.

`distributed_env` reads the ``SID_COORDINATOR_ADDRESS`` / ``SID_NUM_PROCESSES`` / ``SID_PROCESS_ID``
contract written by multi-process launchers, and `maybe_initialize_distributed` calls
``jax.distributed.initialize`` when that contract, ``REQUIRE_MULTIHOST`` or
``REQUIRE_JAX_PROCESS_COUNT`` ask for it (the reference TPU scripts' switches: calling it from one
worker of a multi-host slice alone hangs).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Mapping

from sidcore.errors import LaunchError
from sidcore.interfaces import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

log = logging.getLogger(__name__)
# ------------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes"}
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def distributed_env(environ: Mapping[str, str] | None = None) -> tuple[str, int, int] | None:
    """Read the launcher contract: ``(coordinator_address, num_processes, process_id)`` or ``None``.

    Raises:
        LaunchError: only some of the three variables are set, or their values are invalid.
    """
    env = os.environ if environ is None else environ
    names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
    present = [n for n in names if env.get(n, "") != ""]
    if not present:
        return None
    if len(present) != len(names):
        missing = ", ".join(n for n in names if n not in present)
        raise LaunchError(f"multi-process env incomplete: {', '.join(present)} set but {missing} missing")
    address = env[ENV_COORDINATOR]
    if not _ADDRESS_RE.match(address):
        raise LaunchError(f"{ENV_COORDINATOR}={address!r}: expected host:port")
    try:
        num, pid = int(env[ENV_NUM_PROCESSES]), int(env[ENV_PROCESS_ID])
    except ValueError:
        raise LaunchError(
            f"{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID} must be integers, got "
            f"{env[ENV_NUM_PROCESSES]!r}/{env[ENV_PROCESS_ID]!r}"
        ) from None
    if num < 1 or not 0 <= pid < num:
        raise LaunchError(f"{ENV_PROCESS_ID}={pid} not in [0, {ENV_NUM_PROCESSES}={num})")
    return address, num, pid


def _required_process_count(env: Mapping[str, str]) -> int | None:
    raw = env.get("REQUIRE_JAX_PROCESS_COUNT", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise LaunchError(f"REQUIRE_JAX_PROCESS_COUNT={raw!r}: expected an integer") from None
    return n if n > 0 else None


def maybe_initialize_distributed(mode: str = "auto", environ: Mapping[str, str] | None = None) -> bool:
    """Call ``jax.distributed.initialize`` when asked to; return whether it was called.

    Args:
        mode: ``off`` never initializes; ``auto`` initializes when the ``SID_*`` contract is set
            or ``REQUIRE_MULTIHOST`` / ``REQUIRE_JAX_PROCESS_COUNT=N>0`` is set (TPU VM slices);
            ``on`` always initializes (without the contract: jax's cluster auto-detection).
        environ: environment to read (default ``os.environ``).

    Raises:
        LaunchError: bad env values, or after initialization ``REQUIRE_MULTIHOST`` is set but
            there is one process, or the process count differs from ``REQUIRE_JAX_PROCESS_COUNT``.
    """
    if mode not in ("auto", "on", "off"):
        raise LaunchError(f"jax.distributed mode {mode!r}: expected auto, on or off")
    if mode == "off":
        return False
    env = os.environ if environ is None else environ
    contract = distributed_env(env)
    require_multi = env.get("REQUIRE_MULTIHOST", "").strip().lower() in _TRUE
    required = _required_process_count(env)
    if contract is None and not (require_multi or required) and mode == "auto":
        return False

    import jax  # lazy: the kernel never imports jax at import time

    already = getattr(jax.distributed, "is_initialized", lambda: False)()
    if not already:
        if contract is not None:
            address, num, pid = contract
            log.info("jax.distributed.initialize(%s, num_processes=%d, process_id=%d)", address, num, pid)
            jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
        else:
            log.info("jax.distributed.initialize() (cluster auto-detection)")
            jax.distributed.initialize()
    count = int(jax.process_count())
    if require_multi and count == 1:
        raise LaunchError(
            "REQUIRE_MULTIHOST is set but jax.process_count() == 1 (start the run on --worker=all)"
        )
    if required is not None and count != required:
        raise LaunchError(f"REQUIRE_JAX_PROCESS_COUNT={required} but jax.process_count() == {count}")
    return True
