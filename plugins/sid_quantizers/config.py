"""Options of the built-in quantizers (attrs only: importing this never imports jax).

Collision handling (Sinkhorn re-assignment, the dedup level) is not a quantizer option: it is an
option of ``sid index build`` and works the same for every quantizer.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, validators as v


def _help(text: str, default: Any, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(factory=lambda: list(default), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


def _positive_ints(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"'{attribute.name}' must be a list of positive integers, got {value!r}")
    items = list(value)
    if not items or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in items):
        raise ValueError(f"'{attribute.name}' must be a non-empty list of positive integers, got {value!r}")


_SIZES_HELP = "Codes per level, e.g. [256, 256, 256]; any depth, sizes may differ per level."


@attrs.frozen(kw_only=True)
class RqKmeansConfig:
    """Greedy residual k-means (faiss ``ResidualQuantizer`` with ``max_beam_size=1``, in JAX)."""

    codebook_sizes: list[int] = _help(_SIZES_HELP, [256, 256, 256], validator=_positive_ints)
    max_iter: int = _help("Most Lloyd iterations per level.", 100, validator=v.gt(0))
    tol: float = _help("Stop when the summed squared centroid shift <= tol * mean feature variance "
                       "(sklearn semantics).", 1e-4, validator=v.ge(0))
    n_init: int = _help("k-means++ seedings per level; the lowest inertia wins.", 1, validator=v.gt(0))


@attrs.frozen(kw_only=True)
class BalancedConfig:
    """Size-constrained residual k-means (upstream's constrained RQ-Kmeans): every level's clusters hold
    between max(1, n//K - size_slack) and n//K + 1 items, by an exact minimum-cost assignment."""

    codebook_sizes: list[int] = _help(_SIZES_HELP, [256, 256, 256], validator=_positive_ints)
    max_iter: int = _help("Most balanced Lloyd iterations per level (after a plain k-means warm start; "
                          "upstream 100).", 100, validator=v.gt(0))
    tol: float = _help("Stop when the summed squared centroid shift <= tol * mean feature variance "
                       "(upstream 1e-4).", 1e-4, validator=v.ge(0))
    n_init: int = _help("Warm starts per level, the lowest inertia wins (upstream 3; 1 is 3x faster, "
                        "see docs/sid-construction.md).", 3, validator=v.gt(0))
    size_slack: int = _help("Smallest cluster = max(1, n//K - size_slack); largest = n//K + 1 (upstream 1; "
                            "0 = n//K or n//K + 1).", 1, validator=v.ge(0))
    kmeans_iter: int = _help("Plain Lloyd iterations of the warm start.", 50, validator=v.gt(0))
    sinkhorn_iterations: int = _help("Sinkhorn iterations of the prices of the first, feasible assignment.",
                                     100, validator=v.gt(0))
    tau: float = _help("Sinkhorn temperature as a fraction of the median per-row distance spread.", 0.1,
                       validator=v.gt(0))


@attrs.frozen(kw_only=True)
class RqvaeConfig:
    """MiniOneRec's RQ-VAE (``rq/rqvae.sh``): MLP autoencoder with residual VQ codebooks."""

    codebook_sizes: list[int] = _help(_SIZES_HELP, [256, 256, 256], validator=_positive_ints)
    e_dim: int = _help("Latent (codeword) dimension.", 32, validator=v.gt(0))
    layers: list[int] = _help("Hidden widths of the encoder (the decoder mirrors them).",
                              [2048, 1024, 512, 256, 128, 64], validator=_positive_ints)
    beta: float = _help("Commitment weight: level loss = MSE(q, sg(z)) + beta * MSE(sg(q), z).", 0.25,
                        validator=v.ge(0))
    quant_loss_weight: float = _help("Weight of the mean-over-levels quantization loss.", 1.0,
                                     validator=v.ge(0))
    learning_rate: float = _help("AdamW learning rate (constant after warmup).", 1e-3, validator=v.gt(0))
    weight_decay: float = _help("AdamW weight decay.", 0.0, validator=v.ge(0))
    warmup_steps: int = _help("Linear warmup steps.", 50, validator=v.ge(0))
    grad_clip: float = _help("Global-norm gradient clipping (0 = off).", 1.0, validator=v.ge(0))
    epochs: int = _help("Passes over the items.", 10000, validator=v.gt(0))
    batch_size: int = _help("Items per step (20480 > catalog: one full batch per epoch, like upstream).",
                            20480, validator=v.gt(0))
    kmeans_init: bool = _help("Initialise codebooks by k-means of the first batch's residuals.", True)
    kmeans_iters: int = _help("Lloyd iterations of the codebook init.", 100, validator=v.gt(0))
    eval_every: int = _help("Keep the parameters with the lowest collision rate, checked every this many "
                            "epochs and at the end (0 = keep the last).", 50, validator=v.ge(0))


@attrs.frozen(kw_only=True)
class RqKmeansPlusConfig:
    """MiniOneRec's RQ-Kmeans+ (``rq/rqkmeans_plus.sh``): RQ-VAE with a residual encoder
    ``z = x + MLP(x)`` (latent = input dim, last encoder layer zero-initialised) whose codebooks start
    at the constrained RQ-Kmeans codebooks."""

    codebook_sizes: list[int] = _help(_SIZES_HELP, [256, 256, 256], validator=_positive_ints)
    layers: list[int] = _help("Hidden widths of the encoder MLP (the decoder mirrors them); its output is "
                              "the input dim.", [2048, 1024, 512, 256, 128, 64], validator=_positive_ints)
    init_codebooks: str = _help("Warm-start .npz with codebook_0 .. codebook_{L-1} [K_l, D] (upstream's "
                                "{ds}.codebooks_constrained.npz, or codebooks.npz of a saved "
                                "rq_kmeans_balanced quantizer); empty = fit rq_kmeans_balanced (its "
                                "defaults) first.", "")
    beta: float = _help("Commitment weight: level loss = MSE(q, sg(z)) + beta * MSE(sg(q), z).", 0.25,
                        validator=v.ge(0))
    quant_loss_weight: float = _help("Weight of the mean-over-levels quantization loss.", 1.0,
                                     validator=v.ge(0))
    learning_rate: float = _help("AdamW learning rate (constant after warmup).", 1e-4, validator=v.gt(0))
    weight_decay: float = _help("AdamW weight decay.", 0.0, validator=v.ge(0))
    warmup_epochs: int = _help("Linear warmup over this many epochs x batches per epoch steps (upstream "
                               "trainer).", 50, validator=v.ge(0))
    grad_clip: float = _help("Global-norm gradient clipping (0 = off).", 1.0, validator=v.ge(0))
    epochs: int = _help("Passes over the items.", 10000, validator=v.gt(0))
    batch_size: int = _help("Items per step (upstream rqkmeans_plus.sh: 2048).", 2048, validator=v.gt(0))
    eval_every: int = _help("Keep the parameters with the lowest collision rate, checked every this many "
                            "epochs and at the end (0 = keep the last).", 50, validator=v.ge(0))
