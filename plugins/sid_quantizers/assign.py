"""``sid index assign``: SIDs for new (cold-start) items in an existing SID space.

Nobody already in the index moves. For the new rows, in order:

1. ``codes = fitted.encode(E_new)``: the quantizer's greedy codes (for ``rq_kmeans_balanced`` the
   nearest centroid per level, without the size constraint).
2. A new item *collides* when its codes (the first ``L`` tokens) equal those of an existing item or
   of an earlier new item.
3. The build's collision settings (saved in ``quantizer.json``) say what happens next:
   * ``sinkhorn_rounds > 0`` (re-assignment of the last level): a colliding new item takes the
     nearest last-level code whose ``L`` tokens are still free (the existing items' codes stay
     fixed, so the group-balancing Sinkhorn step of the build has nothing to balance; the nearest
     free code is what it converges to for one row);
   * dedup ``variable`` / ``fixed``: a new item sharing its ``L`` tokens with others gets
     ``<d_r>``, ``r`` one more than the largest ordinal in its group (an existing member without a
     dedup token counts as 0, so joining a unique 3-token item gives ``<d_1>``; that item keeps its
     shorter SID, which the trie and the mixed-depth pipeline accept). With ``fixed`` an item that
     collides with nobody gets ``<d_0>`` as at build time;
   * ``none``: the SID is kept shared, and reported.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from sidcore.api import codes_to_index, level_token

__all__ = ["assign_items", "default_ids"]

_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def default_ids(existing: Sequence[str], count: int) -> list[str]:
    """``max(int ids) + 1 ..`` for an index of integer ids (upstream's), else ``new_0 ..``."""
    ints = [int(k) for k in existing if k.isdigit()]
    if len(ints) == len(existing):
        start = max(ints, default=-1) + 1
        return [str(start + i) for i in range(count)]
    return [f"new_{i}" for i in range(count)]


def _ordinal(tokens: Sequence[str], depth: int) -> int:
    if len(tokens) <= depth:
        return 0
    m = _TOKEN.fullmatch(tokens[depth])
    return int(m.group(2)) if m else 0


def assign_items(fitted: Any, x: np.ndarray, *, ids: Sequence[str], index: Mapping[str, Sequence[str]],
                 settings: Mapping[str, Any]) -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
    """``(new items' SIDs, report)`` for the rows of ``x`` named ``ids`` (module docstring).

    Args:
        fitted: the loaded quantizer (`sid_quantizers.artefact.load_quantizer(...).fitted`).
        index: the existing index (item id -> tokens), not modified.
        settings: the build's collision settings (``quantizer.json`` ``collisions``).
    """
    ids = [str(i) for i in ids]
    codes = np.array(fitted.encode(x), dtype=np.int32, copy=True)  # [M, L]
    depth = codes.shape[1]
    offset = int(settings.get("code_offset", 0))
    dedup = settings.get("dedup", "none")
    reassign = int(settings.get("sinkhorn_rounds", 0)) > 0
    groups: dict[tuple[str, ...], list[int]] = {}  # first L tokens -> dedup ordinals in use
    for tokens in index.values():
        groups.setdefault(tuple(tokens[:depth]), []).append(_ordinal(tokens, depth))

    def base(row: np.ndarray) -> tuple[str, ...]:
        return tuple(level_token(level, int(c) + offset) for level, c in enumerate(row))

    taken = set(groups)
    collided = moved = 0
    for i in range(codes.shape[0]):
        if base(codes[i]) in taken:
            collided += 1
            if reassign:
                d = np.asarray(fitted.distances(x[i:i + 1], codes[i:i + 1], depth - 1))[0]  # [K_last]
                for c in np.argsort(d, kind="stable"):
                    cand = codes[i].copy()
                    cand[-1] = c
                    if base(cand) not in taken:
                        codes[i] = cand
                        moved += 1
                        break
        taken.add(base(codes[i]))
    raw = codes_to_index(codes, item_ids=ids, offset=offset)
    out: dict[str, tuple[str, ...]] = {}
    dedup_tokens = shared = 0
    for key_id in ids:
        toks = raw[key_id]
        members = groups.get(toks)
        if dedup == "none":
            if members is not None:
                shared += 1
            groups.setdefault(toks, []).append(0)
            out[key_id] = toks
            continue
        if members is None:
            ordinal = 0
            extra = (level_token(depth, 0),) if dedup == "fixed" else ()
        else:
            ordinal = max(members) + 1
            extra = (level_token(depth, ordinal),)
        if extra:
            dedup_tokens += 1
        groups.setdefault(toks, []).append(ordinal)
        out[key_id] = toks + extra
    report = {"items": len(ids), "collided": collided, "reassigned": moved, "dedup_tokens": dedup_tokens,
              "shared": shared, "settings": dict(settings)}
    return out, report



def _read_ids(path: str, count: int) -> list[str]:
    from sidcore.api import file_error

    try:
        ids = [line.strip() for line in open(path, encoding="utf-8") if line.strip()]
    except OSError as exc:
        raise file_error(path, f"cannot read ({exc.strerror})") from None
    if len(ids) != count:
        raise file_error(path, f"{len(ids)} ids for {count} embedding rows")
    if len(set(ids)) != len(ids):
        raise file_error(path, "ids repeat")
    return ids


def run_assign(*, quantizer_dir: str, embeddings: str, ids_file: str | None, index_path: str | None,
               embedding_model: str, out_path: str | None, merged: bool, force: bool, as_json: bool) -> None:
    """The body of ``sid index assign`` (`sid_quantizers.commands.assign`)."""
    import json
    from pathlib import Path

    import click

    from sidcore.api import read_index
    from sidcore.api import format_index, write_index
    from sidcore.api import UsageError, file_error
    from sid_quantizers.artefact import load_quantizer
    from sid_quantizers.build import load_embeddings

    loaded = load_quantizer(quantizer_dir)
    x = load_embeddings(embeddings)
    if x.shape[1] != loaded.dim:
        raise file_error(embeddings, f"dim {x.shape[1]}, but the quantizer was fitted on dim {loaded.dim}")
    built_with = loaded.meta["embedding"].get("model") or ""
    if embedding_model and built_with and embedding_model != built_with:
        raise UsageError(f"--embedding-model {embedding_model!r} differs from the build's {built_with!r} "
                         f"({loaded.path / 'quantizer.json'})")
    idx_path = Path(index_path) if index_path else loaded.index_path
    if idx_path is None:
        raise UsageError("the quantizer names no index; give --index INDEX.json")
    index = read_index(idx_path)
    ids = _read_ids(ids_file, x.shape[0]) if ids_file else default_ids(list(index), x.shape[0])
    clash = [i for i in ids if i in index]
    if clash:
        raise file_error(ids_file or embeddings, f"item id {clash[0]} is already in {idx_path} "
                                                 f"({len(clash)} such ids)")
    if out_path and Path(out_path).exists() and not force:
        raise UsageError(f"{out_path} exists; pass --force to overwrite it")
    if merged and not out_path:
        raise UsageError("--merged needs --out")
    new, report = assign_items(loaded.fitted, x, ids=ids, index=index, settings=loaded.settings)
    report["index"] = str(idx_path)
    if out_path:
        result = {**{k: tuple(v) for k, v in index.items()}, **new} if merged else new
        write_index(out_path, result)
        report["out"] = str(out_path)
    elif not as_json:
        click.echo(format_index(new).rstrip("\n"))
    if as_json:
        sids = {} if out_path else {"sids": {k: list(v) for k, v in new.items()}}
        click.echo(json.dumps({**report, **sids}, indent=2))
        return
    msg = (f"{report['items']} new items: {report['collided']} collided with an existing or earlier SID, "
           f"{report['reassigned']} moved to a free last-level code, {report['dedup_tokens']} got a dedup "
           f"token, {report['shared']} still share a SID")
    click.echo(msg, err=not out_path)
    if out_path:
        click.echo(f"wrote {out_path}")
