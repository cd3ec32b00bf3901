"""The pure, jitted SFT train step: shifted cross-entropy on label tokens only, accumulation, update.

Batches arrive with the next-token labels already gathered per row (`sidcore.train.batches`):
``label_pos [B, N]`` indexes the positions whose hidden state predicts ``label_ids [B, N]``,
weighted by ``label_w [B, N]`` (0 for padding). Only those N positions go through the vocabulary
projection — for SID SFT, prompts are ~95 % of tokens and carry no loss, so this skips most of the
largest matmul without changing the loss.

One optimizer step consumes ``A`` stacked micro-batches (``[A, B, ...]``) inside a ``lax.scan``.
Loss normalisation:
- ``token_mean_effective_batch`` (upstream, transformers >= 4.46): sum of NLL over all label tokens
  of the A micro-batches divided by their total count;
- ``mean_of_microbatch_means`` (reference JAX port): mean over micro-batches of per-micro-batch
  token means.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from sidcore.model.merge import Params

Batch = dict[str, jax.Array]


def label_nll(model: Any, batch: Batch, real_vocab: int) -> tuple[jax.Array, jax.Array]:
    """Summed NLL and label-token count of one micro-batch.

    Args:
        model: the merged NNX model.
        batch: ``input_ids, positions, segment_ids [B, L]``, ``label_pos, label_ids [B, N]`` int32,
            ``label_w [B, N]`` float32.
        real_vocab: vocabulary rows that are real tokens; padded rows are excluded from the softmax.

    Returns:
        (sum of NLL, number of label tokens), both float32 scalars.
    """
    h = model.hidden(batch["input_ids"], batch["positions"], batch["segment_ids"])  # [B, L, H]
    hl = jnp.take_along_axis(h, batch["label_pos"][..., None], axis=1)  # [B, N, H]
    flat = hl.reshape(-1, hl.shape[-1])  # [B*N, H]
    lse = model.label_logsumexp(flat, real_vocab)  # [B*N]
    tgt = model.logits_at(flat, batch["label_ids"].reshape(-1, 1))[:, 0]  # [B*N]
    w = batch["label_w"].reshape(-1)
    return jnp.sum((lse - tgt) * w), jnp.sum(w)


def make_train_step(
    merge: Callable[[Params], Any],
    tx: optax.GradientTransformation,
    *,
    real_vocab: int,
    normalization: str = "token_mean_effective_batch",
) -> Callable[[Params, Any, Batch], tuple[Params, Any, dict[str, jax.Array]]]:
    """Build ``step(params, opt_state, batches[A, ...]) -> (params, opt_state, metrics)``.

    Metrics: ``loss`` (normalised as configured), ``tokens`` (label tokens), ``grad_norm``.
    """

    def micro_grads(params: Params, micro: Batch) -> tuple[Params, jax.Array, jax.Array]:
        def f(p: Params) -> tuple[jax.Array, jax.Array]:
            total, count = label_nll(merge(p), micro, real_vocab)
            if normalization == "mean_of_microbatch_means":
                return total / jnp.maximum(count, 1.0), count
            return total, count

        (value, count), grads = jax.value_and_grad(f, has_aux=True)(params)
        return grads, value, count

    def step(params: Params, opt_state: Any, batches: Batch) -> tuple[Params, Any, dict[str, jax.Array]]:
        n_micro = batches["input_ids"].shape[0]

        def body(carry, micro):
            acc, val, cnt = carry
            g, v, c = micro_grads(params, micro)
            acc = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), acc, g)
            return (acc, val + v, cnt + c), None

        if n_micro == 1:  # no accumulator and no scan when there is nothing to accumulate
            acc, val, cnt = micro_grads(params, jax.tree.map(lambda x: x[0], batches))
        else:
            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
            (acc, val, cnt), _ = jax.lax.scan(body, init, batches)
        if normalization == "mean_of_microbatch_means":
            scale, loss = 1.0 / n_micro, val / n_micro
        else:
            scale, loss = 1.0 / jnp.maximum(cnt, 1.0), val / jnp.maximum(cnt, 1.0)
        grads = jax.tree.map(lambda a, p: (a * scale).astype(p.dtype), acc, params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "tokens": cnt, "grad_norm": optax.tree.norm(grads)}
        return params, opt_state, metrics

    return step


def make_eval_loss(merge: Callable[[Params], Any], *, real_vocab: int) -> Callable[[Params, Batch], tuple]:
    """``eval_loss(params, batch) -> (sum NLL, count)`` for validation loss (token-weighted)."""

    def eval_loss(params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return label_nll(merge(params), batch, real_vocab)

    return eval_loss


def make_schedule_factory(kind: str, *, warmup_steps: int, total_steps: int) -> Callable[[float], optax.Schedule]:
    """``make_schedule(peak) -> optax schedule`` of the configured shape, counted in optimizer steps.

    - ``warmup_linear``: 0 -> peak over `warmup_steps`, then linearly to 0 at `total_steps`
      (transformers' default ``linear`` schedule, what upstream actually used);
    - ``warmup_cosine``: 0 -> peak, cosine to 0;
    - ``constant``: peak after the warmup.
    """
    warm = max(0, min(warmup_steps, total_steps))
    rest = max(1, total_steps - warm)

    def make(peak: float) -> optax.Schedule:
        if kind == "warmup_cosine":
            return optax.warmup_cosine_decay_schedule(0.0, peak, max(warm, 1) if warm else 0, total_steps, 0.0) \
                if warm else optax.cosine_decay_schedule(peak, rest)
        tail = optax.linear_schedule(peak, 0.0, rest) if kind == "warmup_linear" else optax.constant_schedule(peak)
        if warm == 0:
            return tail
        return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), tail], [warm])

    return make
