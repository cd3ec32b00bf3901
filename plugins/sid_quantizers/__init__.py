"""Built-in quantizer components: `rq_kmeans`, `rq_kmeans_balanced`, `rqvae`, `rq_kmeans_plus`;
commands ``sid index build``, ``sid index assign`` and ``sid index stats``.

Listing these components imports only `attrs`; the JAX code lives in `sid_quantizers.kmeans`,
`sid_quantizers.balanced`, `sid_quantizers.rqvae` and `sid_quantizers.rqkmeans_plus`, loaded when a
quantizer is selected. Saved quantizers: `sid_quantizers.artefact`; new items: `sid_quantizers.assign`.
The pipeline and its options are documented in docs/sid-construction.md.
"""

from __future__ import annotations

from sidcore import hookimpl
from sidcore.api import Register
from sid_quantizers.config import BalancedConfig, RqKmeansConfig, RqKmeansPlusConfig, RqvaeConfig


@hookimpl
def register_quantizers(register: Register) -> None:
    register("rq_kmeans", "sid_quantizers.factories:build_rq_kmeans", config=RqKmeansConfig,
             summary="Greedy residual k-means (jitted Lloyd, k-means++), any depth and codebook sizes.")
    register("rq_kmeans_balanced", "sid_quantizers.factories:build_balanced", config=BalancedConfig,
             summary="Upstream's constrained RQ-Kmeans: residual k-means, exact size-constrained assignment "
                     "(n//K-1 .. n//K+1 items per code).")
    register("rqvae", "sid_quantizers.rqvae:build", config=RqvaeConfig,
             summary="MiniOneRec's RQ-VAE: MLP autoencoder + residual VQ, k-means init, STE, AdamW.")
    register("rq_kmeans_plus", "sid_quantizers.rqkmeans_plus:build", config=RqKmeansPlusConfig,
             summary="MiniOneRec's RQ-Kmeans+: RQ-VAE with residual encoder z = x + MLP(x) (last layer "
                     "zero), codebooks warm-started from constrained RQ-Kmeans.")


@hookimpl
def register_commands(cli) -> None:
    from sid_quantizers.commands import add_commands

    add_commands(cli)
