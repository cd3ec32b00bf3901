"""Import stub of ``bitsandbytes`` for running reference scripts on machines without CUDA.

The upstream MiniOneRec ``evaluate.py`` imports ``bitsandbytes`` unconditionally but never uses it;
on CPU/TPU machines the real package is useless and often fails to install. Put this folder's
parent (``stubs/``, printed by ``sid stub-path``) first on ``PYTHONPATH`` to satisfy the import:

    PYTHONPATH=$(sid stub-path) python evaluate.py ...

Only ``__version__`` exists. Touching anything else raises `BitsAndBytesStubError` (an
``ImportError``) saying the real functionality is not available. Never install this into
site-packages: it would shadow a real bitsandbytes.
"""

from __future__ import annotations

__version__ = "0.0.0+sid.stub"
__all__ = ["__version__"]


class BitsAndBytesStubError(ImportError):
    """Raised when code uses anything of bitsandbytes beyond importing it."""


def __getattr__(name: str) -> object:
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(f"module 'bitsandbytes' (sid stub) has no attribute {name!r}")
    raise BitsAndBytesStubError(
        f"bitsandbytes stub: real functionality not available (bitsandbytes.{name}); "
        "this is sid's import stub from stubs/, install the real bitsandbytes to use it"
    )
