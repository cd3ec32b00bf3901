"""Activation memory of one SFT micro-batch per device, for the memory plan (`sidcore.run.memory_plan`).

A model of what the backward pass keeps, not a measurement: per decoder layer and token, the
residual stream tensors (layer input, attention-norm output, mid-layer residual, MLP-norm output:
``4 H``), the projections (``q, k, v`` and the attention output; Qwen3 also the pre-norm q/k), the
SwiGLU's gate, up and product (``3 F``), all in the compute dtype; and per row the attention
scores ``[N, L, L]`` on the einsum path: the masked scores and the softmax in float32 plus the
probabilities' compute-dtype copy (only the float32 log-sum-exp ``[N, L]`` with cuDNN flash
attention). ``model.remat`` keeps only each layer's
input and recomputes one layer at a time. Head and MLP widths divide by ``tp`` when it divides them.
The label-only LM head (`sidcore.train.step`) holds its float32 logits ``[V, labels]`` (XLA fuses
the backward's softmax into its consumers: one copy measured), with `LABEL_SHARE` of ``data.max_len`` labels per row (the dry run reads no
data; docs/memory.md gives the measured shares). With ``fsdp > 1`` one layer's weights are gathered whole
(compute dtype) while it runs.
"""

from __future__ import annotations

import math

import attrs

from sidcore.config.schema import RunConfig
from sidcore.model.config import Qwen2Config

GIB = 1024 ** 3
#: Labels per row the plan assumes, as a share of ``data.max_len``. Measured on the full Industrial
#: train split with the three SFT tasks: 16 % of all tokens are labels, at most 38 % of a packed
#: 512-token row (195 labels) and at most 84 labels in one example (docs/memory.md).
LABEL_SHARE = 0.5
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@attrs.frozen
class Term:
    """One line of the memory plan: what, how many bytes per device, and how it was counted."""

    name: str
    bytes: int
    detail: str


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def _split(n: int, tp: int) -> float:
    """Per-device share of a dimension `tp` shards when it divides it."""
    return n / tp if n % tp == 0 else n


def uses_flash(cfg: RunConfig, *, gpu: bool) -> bool:
    """The full-sequence attention kernel the run picks (`sidcore.run.assemble.attention_impl`)."""
    if cfg.model.attention == "auto":
        return gpu and cfg.jax.compute_dtype in ("bfloat16", "float16")
    return cfg.model.attention == "cudnn"


def activation_terms(mc: Qwen2Config, cfg: RunConfig, mesh: dict[str, int], *, gpu: bool
                     ) -> tuple[list[Term], Term]:
    """([activations, lm head, layer weights, batch] terms, the largest single tensor)."""
    b, L, c, tp = cfg.train.per_device_train_batch_size, cfg.data.max_len, _BYTES[cfg.jax.compute_dtype], mesh["tp"]
    H, F, D, V = mc.hidden_size, mc.intermediate_size, mc.resolved_head_dim, mc.vocab_size
    N, K, layers = _split(mc.num_attention_heads, tp), _split(mc.num_key_value_heads, tp), mc.num_hidden_layers
    per_token = 4 * H + (2 * N + 2 * K) * D + 3 * _split(F, tp)  # residuals, q k v o, gate up product
    if mc.qk_norm:
        per_token += (N + K) * D  # q/k before their RMSNorm
    flash = uses_flash(cfg, gpu=gpu)
    # [N, L] lse with flash attention; else [N, L, L] masked scores and softmax in f32 plus the probs copy
    scores_row = N * L * 4 if flash else N * L * L * (8 + c)
    layer = b * (L * per_token * c + scores_row)
    mask = b * L * L  # bool [B, L, L], shared by the layers
    final = b * L * H * c  # final-norm hidden states
    if cfg.model.remat:
        inputs = layers * b * L * H * c
        saved = inputs + layer + mask + final
        detail = f"remat: {layers} layer inputs {gib(inputs)} + one layer recomputed {gib(layer)}"
    else:
        saved = layers * layer + mask + final
        detail = f"{layers} layers x {gib(layer)} kept for the backward"
    detail += f" ({'cuDNN flash' if flash else 'einsum'} attention)"
    labels = b * math.ceil(L * LABEL_SHARE)  # label positions of the micro-batch on this device
    logits = V * labels * 4  # [V, labels] float32
    layer_params = 2 * H * (N + K) * D + 3 * H * _split(F, tp)
    gathered = int(layer_params * c) if mesh["fsdp"] > 1 else 0
    batch_bytes = b * L * 4 * 6  # input_ids, positions, segment_ids, label_pos, label_ids, label_w
    terms = [
        Term("activations", int(saved), detail),
        Term("lm head", logits, f"float32 label logits [{V}, {labels}] ({LABEL_SHARE:.0%} of each row's tokens are "
             "labels)"),
        Term("layer weights", gathered, "one layer all-gathered over fsdp in the compute dtype" if gathered
             else "not gathered (fsdp = 1)"),
        Term("batch", batch_bytes, "one micro-batch of inputs and labels"),
    ]
    candidates = [
        Term("largest", logits, f"label logits [{V}, {labels}] float32"),
        Term("largest", int(b * _split(F, tp) * L * c), f"MLP gate [{b}, {L}, {int(_split(F, tp))}] {cfg.jax.compute_dtype}"),
    ]
    if not flash:
        candidates.append(Term("largest", int(b * N * L * L * 4), f"attention scores [{b}, {int(N)}, {L}, {L}] float32"))
    return terms, max(candidates, key=lambda t: t.bytes)
