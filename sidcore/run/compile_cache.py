"""JAX's persistent compilation cache, on by default for every ``sid run`` (config key ``jax.compile_cache``).

A run of the same shapes compiles the same XLA programs (the model init, the train step, one decoder
program per prefill bucket); with the cache a second process loads them from disk instead of
compiling (docs/benchmarks.md §6 measures the effect). ``jax.compile_cache`` is:

- ``auto`` (default): ``<user cache>/jax`` where ``<user cache>`` is `sidcore.data.tokenizer.cache_root`
  (``$SID_CACHE_DIR``, else ``$XDG_CACHE_HOME/sid``, else ``~/.cache/sid``); a ``JAX_COMPILATION_CACHE_DIR``
  the user set themselves wins over ``auto``;
- ``off``: no persistent cache (whatever the environment says);
- any other value: that folder.

Entries go to a sub-folder named after the jax + jaxlib versions, the backend and its device kind
(on CPU also a hash of the host's CPU flags, since XLA:CPU code is compiled for the host's
instruction set), so a shared home folder never feeds one machine's or one jax release's
executables to another. Call `enable_compile_cache` after `jax.distributed.initialize` (it queries
the devices) and before anything compiles.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
from pathlib import Path

from sidcore.errors import ConfigError

log = logging.getLogger(__name__)

#: Programs that compile faster than this are not written (JAX's own default is 1 s, which skips
#: the sub-second decode and init programs of small models; reading an entry costs milliseconds).
MIN_COMPILE_SECONDS = 0.1
OFF = "off"
AUTO = "auto"


def _cpu_flags_digest() -> str:
    """Short hash of the host CPU's feature flags (``/proc/cpuinfo``), or of the machine name."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    text += line
                    break
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def cache_key() -> str:
    """``jax<ver>-jaxlib<ver>-<backend>-<device kind>[-<cpu flags hash>]`` (file-name safe)."""
    import jax
    import jaxlib

    backend = jax.default_backend()
    kind = jax.devices()[0].device_kind
    parts = [f"jax{jax.__version__}", f"jaxlib{jaxlib.__version__}", backend, kind]
    if backend == "cpu":
        parts.append(_cpu_flags_digest())
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


def resolve_cache_root(setting: str) -> Path | None:
    """The folder `setting` names (before the version/device sub-folder), or None when off."""
    value = (setting or "").strip()
    if value.lower() == OFF:
        return None
    if value.lower() == AUTO:
        user = os.environ.get("JAX_COMPILATION_CACHE_DIR")
        if user:
            return Path(user).expanduser()
        from sidcore.data.tokenizer import cache_root

        return cache_root() / "jax"
    if not value:
        raise ConfigError("jax.compile_cache: empty; use auto, off or a folder")
    return Path(value).expanduser()


def enable_compile_cache(setting: str) -> Path | None:
    """Point JAX's persistent compilation cache at the folder `setting` names; returns it (None: off).

    Raises:
        ConfigError: the folder cannot be created.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cc

    root = resolve_cache_root(setting)
    if root is None:
        jax.config.update("jax_compilation_cache_dir", None)
        jax_cc.reset_cache()
        log.info("persistent compilation cache: off")
        return None
    folder = root / cache_key()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"jax.compile_cache: cannot create {folder} ({e.strerror or e}); "
                          "set jax.compile_cache=off or another folder") from None
    if jax.config.jax_compilation_cache_dir != str(folder):
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax_cc.reset_cache()  # JAX decides once per process whether the cache is used; decide again
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    log.info("persistent compilation cache: %s", folder)
    return folder
