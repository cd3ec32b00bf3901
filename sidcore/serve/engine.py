"""The recommender behind ``sid recommend`` and ``sid serve``: histories -> eval prompts -> the eval
decoder's jitted function -> catalog items, with the filters applied without Python per beam.

* **Prompts** are the eval prompts (`sidcore.data.tasks.eval_prompts`, left-truncated to
  ``data.eval_max_len``), padded to the smallest ``eval.prefill_buckets`` entry that fits and to a
  batch size of the compiled set (``batch_sizes``; `sid recommend` uses ``eval.batch_size``, as eval
  does), sharded over the mesh's data axes (`sidcore.eval.evaluator.decode_fn` / ``pad_prompts``).
* **allow / deny** restrict the catalog once: the decoder component is built on the restricted
  catalog (a smaller trie), so beams can only reach allowed items.
* **exclude history** decodes ``num_beams`` beams (one compiled shape for every user) and drops,
  with one vectorised comparison, the beams whose catalog row is in the user's history, then keeps
  the first ``top_k``. A user with more than ``num_beams - top_k`` history items among the beams gets
  fewer than ``top_k`` items (the answer says how many it has); raise ``--num-beams`` for such users.
* Decoded token paths map back to catalog rows by walking the trie's CSR levels on the host, one
  vectorised gather per level (`catalog_rows`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Sequence

import numpy as np

from sidcore.errors import ConfigError, DataError
from sidcore.serve.inputs import BadInput, Query, Resolver

log = logging.getLogger(__name__)

_COUNTS = {"compiles": 0, "traces": 0}
_LISTENING = threading.Lock()
_installed = False


def compile_counts() -> dict[str, int]:
    """XLA backend compiles and jaxpr traces in this process since `install_compile_counter`."""
    return dict(_COUNTS)


def install_compile_counter() -> None:
    """Count every XLA compile and jit trace of the process (jax.monitoring events), once."""
    global _installed
    import jax.monitoring
    from jax._src import dispatch

    with _LISTENING:
        if _installed:
            return

        def on_duration(event: str, _secs: float, **_: Any) -> None:
            if event == dispatch.BACKEND_COMPILE_EVENT:
                _COUNTS["compiles"] += 1
            elif event == dispatch.JAXPR_TRACE_EVENT:
                _COUNTS["traces"] += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        _installed = True


def read_item_list(path: str, known: Iterable[str]) -> set[str]:
    """An ``--allow``/``--deny`` file: one item id per line, blank lines and ``#`` comments ignored."""
    from pathlib import Path

    known = set(known)
    out: set[str] = set()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    for n, raw in enumerate(text.splitlines(), start=1):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        if item not in known:
            raise DataError(f"{path}:{n}: unknown item id {item!r} (not in the catalog's info file)")
        out.add(item)
    return out


def catalog_rows(trie: Any, tokens: np.ndarray) -> np.ndarray:
    """``tokens [..., T]`` decoder paths -> ``[...]`` catalog row of each, ``-1`` if not a catalog path."""
    lead = tokens.shape[:-1]
    flat = tokens.reshape(-1, tokens.shape[-1])  # [N, T]
    width = trie.path_length
    if flat.shape[1] < width:
        flat = np.pad(flat, ((0, 0), (0, width - flat.shape[1])), constant_values=-1)
    n = flat.shape[0]
    node = np.zeros(n, np.int64)  # [N] node of the current level; -1 = off the trie
    for t, level in enumerate(trie.levels):
        toks, edges = level.children(node)  # [N, M] each, -1 padded
        hit = (toks == flat[:, t : t + 1]) & (edges >= 0)  # [N, M]
        found = hit.any(axis=1) & (node >= 0)
        node = np.where(found, edges[np.arange(n), hit.argmax(axis=1)], -1)
    rows = np.where(node >= 0, trie.leaf_rows[np.maximum(node, 0)], -1)
    return rows.reshape(lead)


class Recommender:
    """Ranked catalog items for user histories, through the run's decoder component.

    Args:
        loaded: `sidcore.serve.load.Loaded`.
        num_beams: beams decoded per user (one compiled shape); ``top_k <= num_beams``.
        top_k: items returned per user by default.
        exclude_history: drop items of the user's history by default.
        allow / deny: item ids the catalog is restricted to / from (None: no restriction).
        batch_sizes: compiled batch sizes (rounded up to the mesh's data replicas); default
            ``eval.batch_size``.
    """

    def __init__(self, loaded: Any, *, num_beams: int, top_k: int, exclude_history: bool = False,
                 allow: set[str] | None = None, deny: set[str] | None = None,
                 batch_sizes: Sequence[int] | None = None) -> None:
        from flax import nnx
        import jax

        from sidcore.decoding.trie import SidTrie
        from sidcore.eval.evaluator import decode_fn
        from sidcore.run.components import build_component

        cfg, catalog, tok = loaded.cfg, loaded.catalog, loaded.bundle.tokenizer
        if not 1 <= top_k <= num_beams:
            raise ConfigError(f"--top-k {top_k} must be between 1 and --num-beams {num_beams}")
        self.loaded, self.cfg, self.catalog, self.tokenizer = loaded, cfg, catalog, tok
        self.num_beams, self.top_k, self.exclude_history = num_beams, top_k, exclude_history
        self.eos_id, self.pad_id = int(tok.eos_token_id), int(tok.pad_token_id)
        self.trie = SidTrie.from_catalog(catalog, eos_id=self.eos_id)  # full catalog: paths -> rows
        self.resolver = Resolver.build(catalog, loaded.info)
        self.title = {e.item_id: e.title for e in loaded.info}
        self.items_of_row = self._allowed_items(allow, deny)
        self.row_ok = np.array([bool(items) for items in self.items_of_row])  # [N] allowed catalog rows
        keep = [i for i, items in enumerate(self.items_of_row) if items]
        if num_beams > len(keep):
            raise ConfigError(f"--num-beams {num_beams} exceeds the {len(keep)} catalog SIDs left after "
                              "--allow/--deny")
        restricted = catalog if len(keep) == len(catalog.sids) else type(catalog)(
            sids=tuple(catalog.sids[i] for i in keep), token_ids=catalog.token_ids[keep],
            suffix_ids=catalog.suffix_ids, items_per_sid={catalog.sids[i]: self.items_of_row[i] for i in keep})
        self.catalog_size = len(keep)
        self.decoder = build_component(loaded.plugins, "decoder", cfg.decoder, catalog=restricted,
                                       eos_id=self.eos_id)
        mesh = loaded.bundle.mesh
        self.replicas = int(mesh.shape["dp"] * mesh.shape["fsdp"])
        sizes = batch_sizes or [cfg.eval.batch_size]
        self.batch_sizes = sorted({-(-int(b) // self.replicas) * self.replicas for b in sizes})
        graphdef, state = nnx.split(loaded.bundle.model)
        self._fn = decode_fn(self.decoder, loaded.bundle, graphdef, jax.tree.map(lambda v: v, state),
                             num_beams=num_beams)
        self.buckets = sorted(cfg.eval.prefill_buckets)
        self.decoder_calls = 0

    def _allowed_items(self, allow: set[str] | None, deny: set[str] | None) -> list[tuple[str, ...]]:
        out = []
        for sid in self.catalog.sids:
            items = self.catalog.items_per_sid.get(sid, ())
            out.append(tuple(i for i in items if (allow is None or i in allow) and not (deny and i in deny)))
        return out

    # -- prompts
    def parse(self, rec: Any, **kw: Any) -> Query:
        """A user record -> `Query` (`sidcore.serve.inputs.parse_user`), its ``top_k`` checked too."""
        from sidcore.serve.inputs import parse_user

        q = parse_user(rec, self.resolver, **kw)
        if q.top_k is not None and q.top_k > self.num_beams:
            raise BadInput(kw.get("prefix", "") + "top_k", f"at most {self.num_beams} (the decoded beams)")
        return q

    def prompt_ids(self, queries: Sequence[Query]) -> list[list[int]]:
        """The eval prompt of each query (same template, truncation and tokenizer as `sid run` eval)."""
        from sidcore.data.minionerec import InteractionRow
        from sidcore.data.tasks import eval_prompts

        rows = [InteractionRow(user_id=q.user_id or "", history_item_title=(), item_title="", history_item_id=(),
                               item_id=0, history_item_sid=q.history_sids, item_sid="") for q in queries]
        return [p.input_ids for p in eval_prompts(rows, self.tokenizer, max_len=self.cfg.data.eval_max_len)]

    def bucket(self, length: int) -> int:
        from sidcore.eval.evaluator import bucket_of

        return bucket_of(length, self.buckets)

    # -- decoding
    def decode(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``tokens [n, K, T]``, ``scores [n, K]`` for ``n`` prompts, through compiled shapes only."""
        from sidcore.eval.evaluator import pad_prompts
        from sidcore.model.sharding import put_batch, to_host

        by_bucket: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_bucket.setdefault(self.bucket(len(p)), []).append(i)
        tokens: np.ndarray | None = None
        scores = np.zeros((len(prompts), self.num_beams), np.float32)
        for bucket, idxs in sorted(by_bucket.items()):
            start = 0
            while start < len(idxs):
                left = len(idxs) - start
                bs = next((b for b in self.batch_sizes if b >= left), self.batch_sizes[-1])
                chunk = idxs[start : start + bs]
                ids, lens = pad_prompts([prompts[i] for i in chunk], rows=bs, bucket=bucket, pad_id=self.pad_id)
                batch = put_batch({"ids": ids, "lens": lens}, self.loaded.bundle.mesh, axis=0)
                tok, sc = to_host(self._fn(self.loaded.params, batch["ids"], batch["lens"]))  # [bs, K, T], [bs, K]
                self.decoder_calls += 1
                if tokens is None:
                    tokens = np.full((len(prompts), *tok.shape[1:]), -1, tok.dtype)
                tokens[chunk] = tok[: len(chunk)]
                scores[chunk] = sc[: len(chunk)]
                start += bs
        assert tokens is not None
        return tokens, scores

    def warmup(self, max_prompt_len: int) -> list[tuple[int, int]]:
        """Compile every (batch size, prefill bucket) a prompt of up to ``max_prompt_len`` tokens uses."""
        from sidcore.eval.evaluator import pad_prompts
        from sidcore.model.sharding import put_batch, to_host

        top = self.bucket(min(max_prompt_len, self.cfg.data.eval_max_len))
        probe = self.prompt_ids([Query(user_id=None, history_sids=(self.catalog.sids[0],), history_rows=(0,))])[0]
        shapes = [(bs, b) for b in self.buckets if b <= top for bs in self.batch_sizes]
        for bs, bucket in shapes:
            ids, lens = pad_prompts([probe], rows=bs, bucket=bucket, pad_id=self.pad_id)
            batch = put_batch({"ids": ids, "lens": lens}, self.loaded.bundle.mesh, axis=0)
            to_host(self._fn(self.loaded.params, batch["ids"], batch["lens"]))
        return shapes

    # -- answers
    def rank(self, queries: Sequence[Query], tokens: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        """Per query: ``{"user_id", "items": [{"item_id", "sid", "title", "score"}, ...]}`` best first."""
        rows = catalog_rows(self.trie, tokens)  # [n, K]
        n = len(queries)
        hist_len = max((len(q.history_rows) for q in queries), default=0)
        hist = np.full((n, max(hist_len, 1)), -2, np.int64)  # [n, H]; -2 matches no row (not even -1)
        for i, q in enumerate(queries):
            if q.exclude_history if q.exclude_history is not None else self.exclude_history:
                hist[i, : len(q.history_rows)] = q.history_rows
        seen = (rows[:, :, None] == hist[:, None, :]).any(axis=2)  # [n, K]
        seen |= (rows >= 0) & ~self.row_ok[np.maximum(rows, 0)]  # filtered out (a decoder without the trie)
        order = np.argsort(seen, axis=1, kind="stable")  # unseen beams first, beam order kept
        kept = (~seen).sum(axis=1)
        out = []
        for i, q in enumerate(queries):
            k = min(q.top_k or self.top_k, int(kept[i]))
            out.append({"user_id": q.user_id, "items": [self._item(rows[i, j], tokens[i, j], scores[i, j])
                                                        for j in order[i, :k]]})
        return out

    def _item(self, row: int, tokens: np.ndarray, score: float) -> dict[str, Any]:
        if row < 0:  # only a decoder that is not catalog-constrained gets here
            from sidcore.eval.evaluator import tokens_to_sid

            sid = tokens_to_sid(self.tokenizer, tokens, None, self.eos_id)
            return {"item_id": None, "sid": sid, "title": None, "score": float(score)}
        items = self.items_of_row[row]
        rec = {"item_id": items[0], "sid": self.catalog.sids[row], "title": self.title[items[0]],
               "score": float(score)}
        if len(items) > 1:
            rec["shared_with"] = list(items[1:])  # a SID collision: these items have the same SID
        return rec

    def recommend(self, queries: Sequence[Query]) -> list[dict[str, Any]]:
        """Prompts -> decode -> rank, for any number of queries."""
        if not queries:
            return []
        return self.rank(queries, *self.decode(self.prompt_ids(queries)))
