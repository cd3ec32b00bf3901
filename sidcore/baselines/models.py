"""Upstream MiniOneRec ``sasrec.py``'s three sequential recommenders in Flax NNX: SASRec, GRU4Rec, Caser.

Every parameter carries upstream's PyTorch ``state_dict`` name and layout (``item_embeddings.weight``
``[N + 1, H]``, ``s_fc.weight [N, H]``, ``gru.weight_ih_l0 [3H, H]``, ...), so a checkpoint's flat
dict *is* an upstream state_dict in numpy and the torch parity test copies weights one to one.
Initialisation draws from PyTorch's default distributions (item embeddings N(0, 0.01), positional
embeddings N(0, 1), linear/conv/GRU uniform in +-1/sqrt(fan_in), Caser's convs Xavier-normal with
bias 0.1) with jax random keys: the same distributions, not the same numbers.

Inputs: ``seq [B, L]`` int32 item ids right-padded with ``item_num`` (the padding row of the
embedding), ``lengths [B]`` real items per row (>= 1). Output: ``[B, item_num]`` float32 logits
over every catalog item. ``dropout_key=None`` is eval mode (upstream ``model.eval()``); a key turns
on every dropout upstream applies in ``model.train()``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["MODELS", "SASRec", "GRU4Rec", "Caser", "build_model", "flat_params", "load_flat_params"]

_MASK_VALUE = -(2.0 ** 32) + 1  # upstream's key/causality padding value


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout (``torch.nn.Dropout``); identity when ``key`` is None or ``rate == 0``."""
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class Linear(nnx.Module):
    """``torch.nn.Linear``: ``weight [out, in]``, ``bias [out]``; also a kernel-1 ``Conv1d`` when
    ``conv=True`` (``weight [out, in, 1]``)."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs, conv: bool = False) -> None:
        bound = 1.0 / math.sqrt(d_in)
        shape = (d_out, d_in, 1) if conv else (d_out, d_in)
        self.weight = nnx.Param(_uniform(rngs.params(), shape, bound))
        self.bias = nnx.Param(_uniform(rngs.params(), (d_out,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.weight[...]
        w = w.reshape(w.shape[0], w.shape[1])
        return x @ w.T + self.bias[...]


class Embedding(nnx.Module):
    def __init__(self, n: int, d: int, std: float, *, rngs: nnx.Rngs) -> None:
        self.weight = nnx.Param(std * jax.random.normal(rngs.params(), (n, d), jnp.float32))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return self.weight[...][ids]


class LayerNorm(nnx.Module):
    """``torch.nn.LayerNorm(d)`` (eps 1e-5, biased variance)."""

    def __init__(self, d: int) -> None:
        self.weight = nnx.Param(jnp.ones((d,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((d,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.weight[...] + self.bias[...]


class MultiHeadAttention(nnx.Module):
    """Upstream ``SASRecModules_ori.MultiHeadAttention``: scores scaled by ``sqrt(hidden)`` (not the
    head size); keys whose input row sums to exactly 0 and future keys are set to ``-2**32 + 1``;
    query rows summing to 0 are zeroed after the softmax; dropout on the weights; ``+ queries``."""

    def __init__(self, hidden: int, num_heads: int, rate: float, *, rngs: nnx.Rngs) -> None:
        self.hidden, self.num_heads, self.rate = hidden, num_heads, rate
        self.linear_q = Linear(hidden, hidden, rngs=rngs)
        self.linear_k = Linear(hidden, hidden, rngs=rngs)
        self.linear_v = Linear(hidden, hidden, rngs=rngs)

    def __call__(self, queries: jax.Array, keys: jax.Array, key: jax.Array | None) -> jax.Array:
        b, t, h = queries.shape
        nh = self.num_heads

        def heads(x: jax.Array) -> jax.Array:  # [B, T, H] -> [B, nh, T, H/nh]
            return x.reshape(b, t, nh, h // nh).transpose(0, 2, 1, 3)

        q, k, v = heads(self.linear_q(queries)), heads(self.linear_k(keys)), heads(self.linear_v(keys))
        scores = jnp.einsum("bnqd,bnkd->bnqk", q, k) / self.hidden ** 0.5  # [B, nh, T, T]
        key_ok = jnp.abs(keys.sum(-1)) != 0  # [B, T]
        scores = jnp.where(key_ok[:, None, None, :], scores, _MASK_VALUE)
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal[None, None], scores, _MASK_VALUE)
        weights = jax.nn.softmax(scores, axis=-1)
        weights = weights * jnp.sign(jnp.abs(queries.sum(-1)))[:, None, :, None]
        weights = dropout(weights, self.rate, key)
        out = jnp.einsum("bnqk,bnkd->bnqd", weights, v).transpose(0, 2, 1, 3).reshape(b, t, h)
        return out + queries


class FeedForward(nnx.Module):
    """Upstream ``PositionwiseFeedForward``: kernel-1 convs, ReLU, dropout, ``LayerNorm(out + x)``."""

    def __init__(self, hidden: int, rate: float, *, rngs: nnx.Rngs) -> None:
        self.rate = rate
        self.w_1 = Linear(hidden, hidden, rngs=rngs, conv=True)
        self.w_2 = Linear(hidden, hidden, rngs=rngs, conv=True)
        self.layer_norm = LayerNorm(hidden)

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        out = dropout(self.w_2(jax.nn.relu(self.w_1(x))), self.rate, key)
        return self.layer_norm(out + x)


def _keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _last(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """``x [B, T, H]`` at position ``lengths - 1`` -> ``[B, H]``."""
    return jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]


class SASRec(nnx.Module):
    """Upstream ``SASRec(hidden, item_num, state_size, dropout)``: one self-attention block."""

    def __init__(self, *, hidden: int, item_num: int, seq_len: int, dropout_rate: float, num_heads: int = 1,
                 rngs: nnx.Rngs) -> None:
        self.item_num, self.seq_len, self.rate = item_num, seq_len, dropout_rate
        self.item_embeddings = Embedding(item_num + 1, hidden, 0.01, rngs=rngs)
        self.positional_embeddings = Embedding(seq_len, hidden, 1.0, rngs=rngs)
        self.ln_1, self.ln_2, self.ln_3 = LayerNorm(hidden), LayerNorm(hidden), LayerNorm(hidden)
        self.mh_attn = MultiHeadAttention(hidden, num_heads, dropout_rate, rngs=rngs)
        self.feed_forward = FeedForward(hidden, dropout_rate, rngs=rngs)
        self.s_fc = Linear(hidden, item_num, rngs=rngs)

    def __call__(self, seq: jax.Array, lengths: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        k_emb, k_attn, k_ff = _keys(dropout_key, 3)
        x = self.item_embeddings(seq) + self.positional_embeddings.weight[...][None, : seq.shape[1]]
        x = dropout(x, self.rate, k_emb)
        mask = (seq != self.item_num).astype(jnp.float32)[..., None]  # [B, T, 1]
        x = x * mask
        attn = self.mh_attn(self.ln_1(x), x, k_attn)
        out = self.ln_3(self.feed_forward(self.ln_2(attn), k_ff) * mask)
        return self.s_fc(_last(out, lengths))


class GRU4Rec(nnx.Module):
    """Upstream ``GRU(hidden, item_num, state_size)``: one ``torch.nn.GRU`` layer over the packed
    history; its final hidden state (at ``lengths - 1``) -> ``s_fc``. No dropout."""

    def __init__(self, *, hidden: int, item_num: int, seq_len: int, dropout_rate: float = 0.0, rngs: nnx.Rngs) -> None:
        del dropout_rate  # upstream's GRU has none
        self.item_num, self.seq_len, self.hidden = item_num, seq_len, hidden
        self.item_embeddings = Embedding(item_num + 1, hidden, 0.01, rngs=rngs)
        bound = 1.0 / math.sqrt(hidden)
        self.gru = nnx.Module()
        for name, shape in (("weight_ih_l0", (3 * hidden, hidden)), ("weight_hh_l0", (3 * hidden, hidden)),
                            ("bias_ih_l0", (3 * hidden,)), ("bias_hh_l0", (3 * hidden,))):
            setattr(self.gru, name, nnx.Param(_uniform(rngs.params(), shape, bound)))
        self.s_fc = Linear(hidden, item_num, rngs=rngs)

    def __call__(self, seq: jax.Array, lengths: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        g, h = self.gru, self.hidden
        x = self.item_embeddings(seq)  # [B, T, H]
        xi = x @ g.weight_ih_l0[...].T + g.bias_ih_l0[...]  # [B, T, 3H] gates r, z, n

        def step(state: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            xt, t = inp
            hh = state @ g.weight_hh_l0[...].T + g.bias_hh_l0[...]
            r = jax.nn.sigmoid(xt[:, :h] + hh[:, :h])
            z = jax.nn.sigmoid(xt[:, h: 2 * h] + hh[:, h: 2 * h])
            n = jnp.tanh(xt[:, 2 * h:] + r * hh[:, 2 * h:])
            new = (1.0 - z) * n + z * state
            return jnp.where((t < lengths)[:, None], new, state), None  # packed: stop at each row's end

        state0 = jnp.zeros((seq.shape[0], h), jnp.float32)
        final, _ = jax.lax.scan(step, state0, (xi.transpose(1, 0, 2), jnp.arange(seq.shape[1])))
        return self.s_fc(final)


class Caser(nnx.Module):
    """Upstream ``Caser(hidden, item_num, state_size, num_filters, filter_sizes, dropout)``: horizontal
    convs ``(i, hidden)`` + ReLU + max over time, one vertical conv ``(state_size, 1)`` + ReLU,
    ``[horizontal..., vertical]`` -> dropout -> ``s_fc``. Padding items are zeroed first."""

    def __init__(self, *, hidden: int, item_num: int, seq_len: int, dropout_rate: float, num_filters: int = 16,
                 filter_sizes: tuple[int, ...] = (2, 3, 4), rngs: nnx.Rngs) -> None:
        self.item_num, self.seq_len, self.rate = item_num, seq_len, dropout_rate
        self.filter_sizes = tuple(int(i) for i in filter_sizes)
        self.item_embeddings = Embedding(item_num + 1, hidden, 0.01, rngs=rngs)
        convs = []
        for i in self.filter_sizes:
            c = nnx.Module()
            std = math.sqrt(2.0 / (i * hidden + num_filters * i * hidden))
            c.weight = nnx.Param(std * jax.random.normal(rngs.params(), (num_filters, 1, i, hidden), jnp.float32))
            c.bias = nnx.Param(jnp.full((num_filters,), 0.1, jnp.float32))
            convs.append(c)
        self.horizontal_cnn = nnx.List(convs)
        self.vertical_cnn = nnx.Module()
        std = math.sqrt(2.0 / (seq_len + seq_len))
        self.vertical_cnn.weight = nnx.Param(std * jax.random.normal(rngs.params(), (1, 1, seq_len, 1), jnp.float32))
        self.vertical_cnn.bias = nnx.Param(jnp.full((1,), 0.1, jnp.float32))
        self.s_fc = Linear(hidden + num_filters * len(self.filter_sizes), item_num, rngs=rngs)

    def __call__(self, seq: jax.Array, lengths: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        del lengths  # Caser reads the whole padded window, as upstream
        x = self.item_embeddings(seq) * (seq != self.item_num).astype(jnp.float32)[..., None]  # [B, T, H]
        t = seq.shape[1]
        pooled = []
        for i, conv in zip(self.filter_sizes, self.horizontal_cnn):
            win = jnp.stack([x[:, a: t - i + 1 + a] for a in range(i)], axis=2)  # [B, T-i+1, i, H]
            out = jnp.einsum("btah,fah->bft", win, conv.weight[...][:, 0]) + conv.bias[...][None, :, None]
            pooled.append(jax.nn.relu(out).max(-1))  # [B, F]
        v = jnp.einsum("bth,t->bh", x, self.vertical_cnn.weight[...][0, 0, :, 0]) + self.vertical_cnn.bias[...]
        out = jnp.concatenate(pooled + [jax.nn.relu(v)], axis=1)
        return self.s_fc(dropout(out, self.rate, dropout_key))


MODELS = {"sasrec": SASRec, "gru4rec": GRU4Rec, "caser": Caser}
"""``sid baseline`` model name -> class (upstream ``--model SASRec|GRU|Caser``)."""


def build_model(name: str, *, item_num: int, seq_len: int, hidden: int, dropout_rate: float, seed: int,
                num_heads: int = 1, num_filters: int = 16, filter_sizes: tuple[int, ...] = (2, 3, 4)) -> nnx.Module:
    """A freshly initialised model of ``name`` (``sasrec``, ``gru4rec``, ``caser``)."""
    rngs = nnx.Rngs(params=seed)
    kw: dict[str, Any] = {"hidden": hidden, "item_num": item_num, "seq_len": seq_len, "dropout_rate": dropout_rate,
                          "rngs": rngs}
    if name == "sasrec":
        kw["num_heads"] = num_heads
    if name == "caser":
        kw.update(num_filters=num_filters, filter_sizes=filter_sizes)
    return MODELS[name](**kw)


def flat_params(model: nnx.Module) -> dict[str, Any]:
    """``{"item_embeddings.weight": array, ...}``: upstream's state_dict keys and layouts (numpy)."""
    import numpy as np

    out: dict[str, Any] = {}

    def walk(prefix: str, tree: Any) -> None:
        if isinstance(tree, dict):
            for k, v in tree.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = np.asarray(tree)

    walk("", nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    return out


def load_flat_params(model: nnx.Module, flat: dict[str, Any]) -> None:
    """Set ``model``'s parameters from a `flat_params`-style dict (every key, exact shapes)."""
    own = flat_params(model)
    missing = sorted(set(own) - set(flat))
    extra = sorted(set(flat) - set(own))
    if missing or extra:
        raise KeyError(f"parameter names differ: missing {missing[:3]}, unexpected {extra[:3]}")
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    for key, value in flat.items():
        node = pure
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if _int_key(node, p) else node[p]
        leaf = parts[-1]
        if tuple(node[leaf].shape) != tuple(value.shape):
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit the model's {tuple(node[leaf].shape)}")
        node[leaf] = jnp.array(value, jnp.float32, copy=True)  # never alias the caller's buffer
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


def _int_key(node: dict, part: str) -> bool:
    return part.isdigit() and int(part) in node
