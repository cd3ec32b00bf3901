"""`sidcore`: the kernel of `sid` — hook specs, plugin loading, config, model, data, train and eval loops.

Public API for plugin authors: `hookimpl` (decorate ``register_*`` functions) and the error tree.
"""

from importlib import metadata as _metadata

import pluggy as _pluggy

from sidcore.errors import SidError

hookimpl = _pluggy.HookimplMarker("sidcore")

try:
    __version__ = _metadata.version("sid")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["SidError", "__version__", "hookimpl"]
