"""Decoding evaluation: prompts -> jitted beam search per prefill bucket -> SID strings -> metrics.

Each prompt is right-padded to the smallest configured prefill bucket that fits (one compile per
bucket used), batches of ``eval.batch_size`` prompts are sharded over the mesh's data axes, and the
decoder (a plugin) runs entirely inside ``jit``. Predictions are decoded to SID strings and scored
by the metric plugins; the report has the ``calc.py``-compatible metrics JSON layout.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Sequence

import attrs
import jax
import jax.numpy as jnp

import numpy as np

from sidcore.config.schema import EvalConfig
from sidcore.errors import ConfigError, DataError
from sidcore.eval.metrics_layout import flat_metrics, metric_families, metrics_json, standard_errors
from sidcore.interfaces import emits_sids, target_kind
from sidcore.files import failpoint
from sidcore.progress import Progress
from sidcore.train import profiling

log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class EvalResult:
    records: list[dict[str, Any]]  # {"input", "output", "predict", "prompt"}
    metrics: dict[str, Any]  # metrics-JSON layout
    timing: dict[str, float]


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    for b in sorted(buckets):
        if length <= b:
            return b
    raise ConfigError(f"eval prompt of {length} tokens exceeds the largest eval.prefill_buckets entry {max(buckets)}")


def tokens_to_sid(tokenizer: Any, ids: Sequence[int], depth: int | None, eos_id: int) -> str:
    """Decoder output ids -> prediction string (SID levels joined, as the reference evaluators do)."""
    ids = [int(i) for i in ids if i >= 0]
    if eos_id in ids:
        ids = ids[: ids.index(eos_id)]
    if depth is not None:
        return "".join(tokenizer.convert_ids_to_tokens(ids[:depth]))
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return text.split("Response:\n")[-1].strip()


def decode_fn(decoder: Any, bundle: Any, graphdef: Any, template: Any, *, num_beams: int) -> Any:
    """``jit((params, input_ids [B, Lp], lengths [B]) -> (tokens [B, K, T], scores [B, K]))``: the decoder
    plugin over the bundle's model; one compile per ``(B, Lp)``. Eval and `sidcore.serve` both use it."""
    from sidcore.decoding.adapter import LMDecodeModel
    from sidcore.model.merge import make_merge

    merge = make_merge(graphdef, template)
    real_vocab = bundle.real_vocab

    def run(params, input_ids, lengths):
        model = LMDecodeModel(merge(params), real_vocab)
        return decoder.decode(model, input_ids, lengths, num_beams=num_beams)

    return jax.jit(run)


def pad_prompts(prompts: Sequence[Sequence[int]], *, rows: int, bucket: int, pad_id: int) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """Right-pad ``prompts`` to ``ids [rows, bucket]`` and ``lengths [rows]``; missing rows repeat the last
    prompt (a real prompt, so padding rows cost nothing special and are dropped by the caller)."""
    prompts = list(prompts) + [prompts[-1]] * (rows - len(prompts))
    ids = np.full((rows, bucket), pad_id, np.int32)
    lens = np.zeros((rows,), np.int32)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = p
        lens[r] = len(p)
    return ids, lens


def params_in_compute_dtype(params: Any, compute_dtype: str) -> Any:
    """Float params cast once to a narrower compute dtype (e.g. float32 master weights, bf16 compute).

    Every use of a weight in the model casts it to the compute dtype first, so this gives identical
    results; it spares each decode step re-reading the float32 weights and converting them.
    """
    cd = jnp.dtype(compute_dtype)
    leaves = jax.tree.leaves(params)
    if not any(jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize > cd.itemsize for x in leaves):
        return params
    cast = lambda x: x.astype(cd) if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    return jax.jit(lambda p: jax.tree.map(cast, p))(params)


class Evaluator:
    """Holds the compiled decode functions so periodic evals reuse them."""

    def __init__(self, eval_cfg: EvalConfig, *, compute_dtype: str, bundle: Any, decoder: Any, catalog: Any,
                 metrics: Sequence[Any], prompts: Sequence[Any], popularity: Sequence[str] | None = None,
                 source: str = "the evaluation split") -> None:
        if not prompts:
            raise DataError(f"{source}: no evaluation rows")
        if eval_cfg.num_beams > len(catalog.sids):
            raise ConfigError(f"eval.num_beams={eval_cfg.num_beams} exceeds the catalog size {len(catalog.sids)}")
        self.cfg, self.compute_dtype = eval_cfg, compute_dtype
        self.bundle, self.decoder, self.catalog = bundle, decoder, catalog
        self.metrics, self.prompts, self.popularity = list(metrics), list(prompts), popularity
        # trie outputs are catalog paths: join their level tokens; anything else is decoded like upstream
        self.depth = int(catalog.token_ids.shape[1]) if emits_sids(decoder) else None
        self._fns: dict[int, Any] = {}
        self.compiles = 0
        self.compile_seconds = 0.0

    def _fn(self, bucket: int, graphdef: Any, template: Any) -> Any:
        if bucket not in self._fns:
            self._fns[bucket] = decode_fn(self.decoder, self.bundle, graphdef, template, num_beams=self.cfg.num_beams)
        return self._fns[bucket]

    def predict(self, params: Any, *, desc: str = "decode", leave: bool = True) -> tuple[list[list[str]],
                                                                                          dict[str, float]]:
        """Beams for every prompt, with a progress bar (prompts done / total, prompts/s, ETA) or one log
        line per tenth of the prompts when stderr is not a terminal."""
        from flax import nnx

        graphdef, st = nnx.split(self.bundle.model)
        template = jax.tree.map(lambda v: v, st)
        cfg = self.cfg
        params = params_in_compute_dtype(params, self.compute_dtype)
        bs = cfg.batch_size
        mesh = self.bundle.mesh
        replicas = int(mesh.shape["dp"] * mesh.shape["fsdp"])
        bs = -(-bs // replicas) * replicas
        by_bucket: dict[int, list[int]] = collections.defaultdict(list)
        for i, p in enumerate(self.prompts):
            by_bucket[bucket_of(len(p.input_ids), cfg.prefill_buckets)].append(i)
        preds: list[list[str] | None] = [None] * len(self.prompts)
        self.scores: list[np.ndarray | None] = [None] * len(self.prompts)  # [K] per prompt, best first
        t_all = time.perf_counter()
        progress = Progress(len(self.prompts), desc=desc, unit="prompt", log_every=max(1, len(self.prompts) // 10),
                            enabled=jax.process_index() == 0, leave=leave)
        try:
            self._decode_buckets(params, by_bucket, preds, graphdef, template, bs, progress)
        finally:
            progress.close()
        wall = time.perf_counter() - t_all
        timing = {"eval_seconds": wall, "prompts_per_sec": len(self.prompts) / wall if wall else 0.0,
                  "compiles": self.compiles, "compile_seconds": self.compile_seconds,
                  "prompts_per_sec_excl_compile": len(self.prompts) / max(wall - self.compile_seconds, 1e-9)}
        return [p or [] for p in preds], timing

    def _decode_buckets(self, params: Any, by_bucket: dict[int, list[int]], preds: list[Any], graphdef: Any,
                        template: Any, bs: int, progress: Progress) -> None:
        from sidcore.model.sharding import put_batch, to_host

        tok, mesh = self.bundle.tokenizer, self.bundle.mesh
        pad_id, eos = int(tok.pad_token_id), int(tok.eos_token_id)
        for bucket, idxs in sorted(by_bucket.items()):
            fn = self._fn(bucket, graphdef, template)
            for start in range(0, len(idxs), bs):
                profiling.step("decode")  # profile.steps counts decode batches in an eval run
                chunk = idxs[start : start + bs]
                ids, lens = pad_prompts([self.prompts[i].input_ids for i in chunk], rows=bs, bucket=bucket,
                                        pad_id=pad_id)
                batch = put_batch({"ids": ids, "lens": lens}, mesh, axis=0)
                args = [batch["ids"], batch["lens"]]
                t0 = time.perf_counter()
                first = not getattr(fn, "_sid_warm", False)
                tokens, scores = to_host(fn(params, *args))  # [bs, K, T], [bs, K]
                if first:
                    self.compiles += 1
                    self.compile_seconds += time.perf_counter() - t0
                    fn._sid_warm = True  # type: ignore[attr-defined]
                for r, i in enumerate(chunk):
                    preds[i] = [tokens_to_sid(tok, beam, self.depth, eos) for beam in tokens[r]]
                    self.scores[i] = scores[r]
                progress.update(len(chunk))
                failpoint("eval.batch")

    def _values(self, predictions: Sequence[Sequence[str]], rows: Sequence[int]) -> dict[str, float]:
        values: dict[str, float] = {}
        for m in self.metrics:
            # item-level metrics (SID collisions resolved) score against the row's item id
            item_level = target_kind(m) == "item"
            targets = [self.prompts[i].target_item if item_level else self.prompts[i].target_sid for i in rows]
            values.update(m(list(predictions), targets, catalog=self.catalog))
        return values

    def score(self, predictions: Sequence[Sequence[str]], *, stderr: bool = False) -> dict[str, Any]:
        """The metrics-JSON dict of ``predictions`` (one list per prompt); with ``stderr``, also the
        standard error of each family@K over the rows (each row scored alone by the same metrics)."""
        rows = range(len(self.prompts))
        out = metrics_json(self._values(predictions, rows), topk=self.cfg.topk, n=len(self.prompts),
                           n_beams=len(predictions[0]) if predictions else 0)
        if stderr and predictions:
            per_row = [self._values([predictions[i]], [i]) for i in rows]
            out["stderr"] = standard_errors(per_row, metric_families(out))
        return out

    def run(self, params: Any) -> EvalResult:
        predictions, timing = self.predict(params)
        metrics = self.score(predictions, stderr=True)
        if self.popularity is not None:
            metrics["popularity_baseline"] = self.score([list(self.popularity)] * len(self.prompts), stderr=True)
        # upstream's input/output/predict, plus the exact prompt the model saw (chat template included)
        tok = self.bundle.tokenizer
        records = [{"input": p.input_text, "output": p.target_sid + "\n", "predict": pred,
                    "prompt": tok.decode(list(p.input_ids), skip_special_tokens=False)}
                   for p, pred in zip(self.prompts, predictions)]
        return EvalResult(records=records, metrics=metrics, timing=timing)

    def periodic(self, params: Any, step: int) -> dict[str, float]:
        """Flat ``{"hr@10": .., "ndcg@10": .., "<family>@K": ..}`` values of every metric family, for
        the train loop's logging and best-checkpoint selection."""
        predictions, _ = self.predict(params, desc=f"decode@{step}", leave=False)
        return flat_metrics(self.score(predictions))
