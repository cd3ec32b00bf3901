"""MiniOneRec's RQ-VAE (``rq/rqvae.py``, ``rq/models/*``) in Flax NNX + optax (`rqvae`).

* **Model.** Encoder MLP ``in_dim -> 2048 -> 1024 -> 512 -> 256 -> 128 -> 64 -> e_dim`` (ReLU after
  every layer but the last, Xavier-normal weights, zero biases, no BN/dropout); the decoder mirrors
  it. ``L`` codebooks ``[K_l, e_dim]`` (default 3 x 256 x 32), uniform(-1/K, 1/K) unless k-means
  initialised.
* **Residual VQ.** Level ``l`` takes the code nearest to the running residual ``r_l``; its output is
  the straight-through ``r_l + sg(q_l - r_l)`` and the next residual is ``r_l`` minus that output
  (so, as upstream, deeper levels pass no gradient to the encoder). The decoder reads the sum of
  the level outputs.
* **Loss** (`rqvae_loss`): ``MSE(x_hat, x) + w * mean_l[MSE(q_l, sg(r_l)) + beta * MSE(sg(q_l), r_l)]``.
* **Training.** AdamW (lr 1e-3, wd 0), linear warmup 50 steps then constant, global-norm clip 1.0;
  k-means init of every codebook on the encoder residuals of the first batch; shuffled batches,
  last partial batch kept. One jitted dispatch runs ``eval_every`` epochs: a ``lax.scan`` over the
  epochs, each drawing its permutation on the device and scanning over its full batches (then one
  step on the partial batch); when one batch holds the whole catalogue (upstream: 20,480 > 3,686)
  an epoch is one step on the unshuffled rows. The carry (parameters and optimizer state) is
  donated. Every ``eval_every`` epochs the collision rate of the greedy codes is measured and the
  lowest one's parameters are kept (upstream's ``best_collision_model.pth``), copied to the host.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import attrs
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sid_quantizers.config import RqvaeConfig
from sid_quantizers.kmeans import check_sizes, fit_kmeans, sq_dists

__all__ = ["FittedRqvae", "RQVAE", "RqvaeQuantizer", "collision_rate", "make_optimizer", "restore_rqvae",
           "rqvae_loss", "train_rqvae"]

sg = jax.lax.stop_gradient


class MLP(nnx.Module):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, dims: Sequence[int], *, rngs: nnx.Rngs) -> None:
        init = nnx.initializers.xavier_normal()
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=init, bias_init=nnx.initializers.zeros, rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])
        ])

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = jax.nn.relu(x)
        return x


class RQVAE(nnx.Module):
    """Encoder MLP, residual VQ, decoder MLP. ``residual=True`` is RQ-Kmeans+'s encoder
    ``z = x + MLP(x)``: the latent is the input space (``e_dim = in_dim``) and the MLP's last layer
    starts at zero, so at initialisation ``z = x``."""

    def __init__(self, in_dim: int, cfg: Any, *, rngs: nnx.Rngs, residual: bool = False) -> None:
        e_dim = in_dim if residual else cfg.e_dim
        dims = [in_dim, *cfg.layers, e_dim]
        self.residual = residual
        self.encoder = MLP(dims, rngs=rngs)
        if residual:
            last = self.encoder.layers[-1]
            last.kernel[...] = jnp.zeros_like(last.kernel[...])
            last.bias[...] = jnp.zeros_like(last.bias[...])
        self.decoder = MLP(dims[::-1], rngs=rngs)
        self.codebooks = nnx.List([
            nnx.Param(jax.random.uniform(rngs.params(), (k, e_dim), minval=-1.0 / k, maxval=1.0 / k))
            for k in cfg.codebook_sizes
        ])

    def embed(self, x: jax.Array) -> jax.Array:
        """The latent ``z`` that the codebooks quantize: ``encoder(x)``, or ``x + encoder(x)``."""
        z = self.encoder(x)
        return x + z if self.residual else z

    def quantize(self, z: jax.Array) -> tuple[jax.Array, list[jax.Array], list[tuple[jax.Array, jax.Array]]]:
        """``z [B, e]`` -> (straight-through sum ``[B, e]``, codes per level, (q_l, r_l) per level)."""
        r, total, codes, pairs = z, jnp.zeros_like(z), [], []
        for book in self.codebooks:
            c = book[...]
            idx = jnp.argmin(sq_dists(r, c), axis=1).astype(jnp.int32)
            q = c[idx]
            pairs.append((q, r))
            out = r + sg(q - r)
            total = total + out
            r = r - out
            codes.append(idx)
        return total, codes, pairs

    def encode_codes(self, x: jax.Array) -> jax.Array:
        return jnp.stack(self.quantize(self.embed(x))[1], axis=1)


def rqvae_loss(model: RQVAE, x: jax.Array, *, beta: float, quant_weight: float):
    """``(total, (recon, quant))`` of one batch (the formula of the module docstring)."""
    total_q, _, pairs = model.quantize(model.embed(x))
    x_hat = model.decoder(total_q)
    recon = jnp.mean((x_hat - x) ** 2)
    levels = [jnp.mean((q - sg(r)) ** 2) + beta * jnp.mean((sg(q) - r) ** 2) for q, r in pairs]
    quant = jnp.mean(jnp.stack(levels))
    return recon + quant_weight * quant, (recon, quant)


def make_optimizer(cfg: Any, *, warmup_steps: int | None = None) -> optax.GradientTransformation:
    """AdamW with linear warmup (``warmup_steps``, default ``cfg.warmup_steps``), then constant."""
    warm = cfg.warmup_steps if warmup_steps is None else warmup_steps
    schedule = optax.linear_schedule(0.0, cfg.learning_rate, warm) if warm else cfg.learning_rate
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    return optax.chain(*parts, optax.adamw(schedule, weight_decay=cfg.weight_decay))


def kmeans_init(model: RQVAE, x: jax.Array, *, key: jax.Array, iters: int) -> None:
    """Set every codebook to the k-means centroids of its level's residuals on batch ``x``."""
    r = model.embed(x)
    for level, book in enumerate(model.codebooks):
        c, lab, _ = fit_kmeans(jax.random.fold_in(key, level), r, book.shape[0], max_iter=iters, tol=1e-4)
        book[...] = c
        r = r - c[lab]


def collision_rate(codes: np.ndarray) -> float:
    codes = np.asarray(codes)
    return 1.0 - len(np.unique(codes, axis=0)) / codes.shape[0]


def _step_fn(graphdef, tx, cfg: RqvaeConfig):
    def loss(state, x):
        return rqvae_loss(nnx.merge(graphdef, state), x, beta=cfg.beta, quant_weight=cfg.quant_loss_weight)

    def step(carry, x):
        state, opt = carry
        (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(state, x)
        updates, opt = tx.update(grads, opt, state)
        return (optax.apply_updates(state, updates), opt), (value, *aux)

    return step


def _chunk_fn(step, n: int, bs: int, shuffle: jax.Array):
    """Jitted ``(carry, x, epochs [m] int32) -> (carry, logs [m] of the epochs' last steps)``.

    Epoch ``e`` visits ``x[perm]`` with ``perm = permutation(fold_in(shuffle, e), n)`` in batches of
    ``bs`` (a ``lax.scan``), then the partial batch; with ``bs == n`` it is one step on ``x``.
    """
    full, rest = divmod(n, bs)

    def epoch(carry, e, x):
        if bs == n:
            return step(carry, x)
        perm = jax.random.permutation(jax.random.fold_in(shuffle, e), n)
        carry, logs = jax.lax.scan(
            lambda c, i: step(c, x[jax.lax.dynamic_slice_in_dim(perm, i * bs, bs)]), carry,
            jnp.arange(full, dtype=jnp.int32))
        if rest:
            return step(carry, x[perm[full * bs:]])
        return carry, tuple(v[-1] for v in logs)

    @partial(jax.jit, donate_argnums=0)
    def run(carry, x, epochs):
        return jax.lax.scan(lambda c, e: epoch(c, e, x), carry, epochs)

    return run


@attrs.frozen(kw_only=True, eq=False)
class FittedRqvae:
    """A trained RQ-VAE (`sidcore.interfaces.FittedQuantizer`)."""

    graphdef: Any
    state: Any  # nnx.State of numpy arrays
    fit_codes: np.ndarray
    history: tuple[dict[str, float], ...] = ()

    def model(self) -> RQVAE:
        return nnx.merge(self.graphdef, self.state)

    @property
    def residual(self) -> bool:
        return bool(self.model().residual)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(int(b.shape[0]) for b in self.model().codebooks)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(_encode(self.graphdef, self.state, jnp.asarray(x, jnp.float32)), np.int32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        m = self.model()
        z = sum(m.codebooks[i][...][jnp.asarray(codes[:, i])] for i in range(codes.shape[1]))
        return np.asarray(m.decoder(z), np.float32)

    def distances(self, x: np.ndarray, codes: np.ndarray, level: int) -> np.ndarray:
        m = self.model()
        r = m.embed(jnp.asarray(x, jnp.float32))
        for i in range(level):
            r = r - m.codebooks[i][...][jnp.asarray(codes[:, i])]
        return np.asarray(sq_dists(r, m.codebooks[level][...]))


@partial(jax.jit, static_argnums=0)
def _encode(graphdef, state, x):
    return nnx.merge(graphdef, state).encode_codes(x)


def train_rqvae(model: RQVAE, x: jax.Array, cfg: Any, *, key: jax.Array, warmup_steps: int | None = None
                ) -> FittedRqvae:
    """Train ``model`` on ``x`` with the optimizer/epochs/batches of ``cfg`` (an `RqvaeConfig` or a
    config with the same training fields); keep the lowest-collision parameters (module docstring)."""
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    shuffle = jax.random.fold_in(key, 1)
    graphdef, state = nnx.split(model)
    tx = make_optimizer(cfg, warmup_steps=warmup_steps)
    opt = tx.init(state)
    run_chunk = _chunk_fn(_step_fn(graphdef, tx, cfg), n, bs, shuffle)
    encode = lambda s: _encode(graphdef, s, x)  # noqa: E731 (x is an argument, not a jit constant)
    best: tuple[float, Any] | None = None
    history = []
    chunk = cfg.eval_every or cfg.epochs
    epoch = 0
    while epoch < cfg.epochs:
        m = min(chunk, cfg.epochs - epoch)
        (state, opt), logs = run_chunk((state, opt), x, jnp.arange(epoch, epoch + m, dtype=jnp.int32))
        last = [float(v[-1]) for v in logs]  # one host sync per chunk
        epoch += m
        rate = collision_rate(np.asarray(encode(state)))
        history.append({"epoch": epoch, "loss": last[0], "recon": last[1], "quant": last[2],
                        "collision_rate": rate})
        if cfg.eval_every == 0 or best is None or rate < best[0]:
            best = (rate, jax.tree.map(np.array, state))  # a host copy: the next chunk donates state
    state = best[1]
    codes = np.asarray(encode(state), np.int32)
    return FittedRqvae(graphdef=graphdef, state=state, fit_codes=codes, history=tuple(history))


def restore_rqvae(cfg: Any, params: bytes, *, in_dim: int, residual: bool,
                  fit_codes: np.ndarray) -> FittedRqvae:
    """A `FittedRqvae` from msgpack'd pure-dict parameters (`sid_quantizers.artefact`)."""
    from flax import serialization

    graphdef, state = nnx.split(RQVAE(in_dim, cfg, rngs=nnx.Rngs(0), residual=residual))
    nnx.replace_by_pure_dict(state, serialization.msgpack_restore(params))
    return FittedRqvae(graphdef=graphdef, state=jax.tree.map(np.asarray, state),
                       fit_codes=np.asarray(fit_codes, np.int32))


@attrs.frozen(kw_only=True)
class RqvaeQuantizer:
    """`sidcore.interfaces.Quantizer` training the RQ-VAE of `RqvaeConfig`."""

    cfg: RqvaeConfig

    def fit(self, embeddings: np.ndarray, *, seed: int) -> FittedRqvae:
        cfg = self.cfg
        x = jnp.asarray(np.asarray(embeddings, np.float32))
        n = x.shape[0]
        check_sizes(cfg.codebook_sizes, n, "rqvae")
        key = jax.random.PRNGKey(seed)
        model = RQVAE(x.shape[1], cfg, rngs=nnx.Rngs(params=jax.random.fold_in(key, 0)))
        bs = min(cfg.batch_size, n)
        shuffle = jax.random.fold_in(key, 1)
        first = x if bs == n else x[jax.random.permutation(jax.random.fold_in(shuffle, 0), n)[:bs]]
        if cfg.kmeans_init:
            kmeans_init(model, first, key=jax.random.fold_in(key, 2), iters=cfg.kmeans_iters)
        return train_rqvae(model, x, cfg, key=key)


def build(cfg: RqvaeConfig) -> RqvaeQuantizer:
    """Factory registered as quantizer ``rqvae``."""
    return RqvaeQuantizer(cfg=cfg)
