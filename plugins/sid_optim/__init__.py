"""Built-in optimizer plugin ``optim``: components ``adamw``, ``optax_muon`` and ``muon_local``.

No extras are needed (optax is a core dependency). Factories are registered lazily as
``"sid_optim.<module>:build"`` strings, so listing plugins imports only `sid_optim.config` (attrs);
jax and optax are imported when the kernel builds the selected optimizer. Each factory is called as
``build(cfg, *, learning_rate, make_schedule)`` and returns an ``optax.GradientTransformation``;
the kernel chains gradient clipping in front. See ``docs/optimizers.md``.
"""

from __future__ import annotations

from sid_optim.config import AdamWConfig, MuonLocalConfig, OptaxMuonConfig
from sidcore import hookimpl
from sidcore.api import Register


@hookimpl
def register_optimizers(register: Register) -> None:
    """Register the three built-in optimizers."""
    register("adamw", "sid_optim.adamw:build", config=AdamWConfig,
             summary="optax.adamw (upstream/reference baseline)")
    register("optax_muon", "sid_optim.optax_muon:build", config=OptaxMuonConfig,
             summary="optax.contrib.muon; embeddings, lm_head and non-2-D leaves on its Adam")
    register("muon_local", "sid_optim.muon_local:build", config=MuonLocalConfig,
             summary="own Muon (reference local/optax-0.2.6 modes) + AdamW partition")
