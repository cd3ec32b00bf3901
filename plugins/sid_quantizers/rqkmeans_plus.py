"""RQ-Kmeans+ (`rq_kmeans_plus`): upstream ``rq/rqkmeans_plus.py`` in JAX.

An RQ-VAE (`sid_quantizers.rqvae`: same MLPs, residual VQ with straight-through, loss, AdamW,
clipping, lowest-collision selection) with three changes, as upstream:

* **Residual encoder** ``z = x + MLP(x)``: the MLP maps ``D -> layers -> D`` (upstream requires
  ``e_dim == D``), so the codebooks live in the input space;
* the MLP's **last layer is zero-initialised** (weight and bias), so at the start ``z = x``;
* the codebooks are **warm-started** from constrained RQ-Kmeans codebooks (``init_codebooks``, an
  ``.npz`` with ``codebook_0 ..``; without one, `sid_quantizers.balanced.fit_balanced` runs first
  with ``rq_kmeans_balanced``'s defaults), no k-means init.

Training follows upstream's trainer: lr 1e-4 constant after a linear warmup of ``warmup_epochs``
epochs (``warmup_epochs x ceil(N / batch_size)`` steps), global-norm clip 1.0, shuffled batches of
2,048. The decoder mirrors the encoder (``D -> reversed layers -> D``).
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sid_quantizers.config import RqKmeansPlusConfig
from sid_quantizers.kmeans import check_sizes
from sid_quantizers.rqvae import RQVAE, FittedRqvae, train_rqvae
from sidcore.api import file_error

__all__ = ["RqKmeansPlusQuantizer", "build", "load_codebooks", "warm_model"]


def load_codebooks(path: str | Path, sizes, dim: int) -> list[np.ndarray]:
    """``codebook_l`` ``[K_l, dim]`` for every level from an ``.npz``, or a `DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "file not found (init_codebooks)")
    try:
        with np.load(path, allow_pickle=False) as z:
            books = {name: np.asarray(z[name], np.float32) for name in z.files}
    except (ValueError, OSError) as exc:
        raise file_error(path, f"not an .npz of arrays ({exc})") from None
    out = []
    for level, k in enumerate(sizes):
        c = books.get(f"codebook_{level}")
        if c is None:
            raise file_error(path, f"no codebook_{level} (levels {list(sizes)})", key=f"codebook_{level}")
        if c.shape != (k, dim):
            raise file_error(path, f"shape {c.shape}, expected ({k}, {dim})", key=f"codebook_{level}")
        out.append(c)
    return out


def warm_model(x_dim: int, cfg: RqKmeansPlusConfig, books, *, key: jax.Array) -> RQVAE:
    """The untrained RQ-Kmeans+ model: residual encoder (last layer zero), codebooks = ``books``."""
    model = RQVAE(x_dim, cfg, rngs=nnx.Rngs(params=key), residual=True)
    for book, c in zip(model.codebooks, books):
        book[...] = jnp.asarray(c, jnp.float32)
    return model


@attrs.frozen(kw_only=True)
class RqKmeansPlusQuantizer:
    """`sidcore.interfaces.Quantizer` training RQ-Kmeans+ (`RqKmeansPlusConfig`)."""

    cfg: RqKmeansPlusConfig

    def fit(self, embeddings: np.ndarray, *, seed: int) -> FittedRqvae:
        cfg = self.cfg
        xn = np.asarray(embeddings, np.float32)
        n, dim = xn.shape
        sizes = check_sizes(cfg.codebook_sizes, n, "rq_kmeans_plus")
        if cfg.init_codebooks:
            books = load_codebooks(cfg.init_codebooks, sizes, dim)
        else:
            from sid_quantizers.balanced import fit_balanced

            books = list(fit_balanced(xn, sizes, seed=seed).codebooks)
        key = jax.random.PRNGKey(seed)
        model = warm_model(dim, cfg, books, key=jax.random.fold_in(key, 0))
        steps_per_epoch = math.ceil(n / min(cfg.batch_size, n))
        return train_rqvae(model, jnp.asarray(xn), cfg, key=key,
                           warmup_steps=cfg.warmup_epochs * steps_per_epoch)


def build(cfg: RqKmeansPlusConfig) -> RqKmeansPlusQuantizer:
    """Factory registered as quantizer ``rq_kmeans_plus``."""
    return RqKmeansPlusQuantizer(cfg=cfg)
