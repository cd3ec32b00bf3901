"""Saved quantizers (`sid_quantizers.artefact`) and `sid index assign` (new items, nobody moves)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from sid_quantizers.artefact import load_quantizer
from sid_quantizers.assign import assign_items
from sid_quantizers.build import build_index
from sid_quantizers.config import RqKmeansConfig, RqvaeConfig
from sid_quantizers.factories import build_rq_kmeans
from sid_quantizers.rqvae import build as build_rqvae
from sidcore.data.minionerec import bundled_data_dir, read_index
from sidcore.data.sid_index import write_index
from sidcore.errors import DataError

CAT = "Industrial_and_Scientific"
N = 3686


def embeddings(seed=0, dim=8):
    rng = np.random.default_rng(seed)
    top = rng.normal(size=(24, dim)) * 3
    return (top[rng.integers(24, size=N)] + rng.normal(size=(N, dim))).astype(np.float32)


def sid(*args):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1"}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def sid_here(capsys, *args):
    """`sid ...` in this process (faster than a subprocess): ``(exit code, stdout, stderr)``."""
    from sidcore.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        rc = 0
    except SystemExit as exc:
        rc = exc.code or 0
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An rq_kmeans index (variable dedup) built from embeddings(), saved with its quantizer."""
    out = tmp_path_factory.mktemp("built")
    x = embeddings()
    np.save(out / "e.npy", x)
    report = build_index(embeddings=x, data_dir=bundled_data_dir(), category=CAT, out=out / "data",
                         quantizer=build_rq_kmeans(RqKmeansConfig(codebook_sizes=[16, 8, 8], max_iter=30)),
                         quantizer_name="rq_kmeans", seed=0, dedup="variable", embedding_model="toy-8")
    return out, x, report


def _held_out(index, count=40):
    """Ids of items whose SID no other item shares (3 tokens in a variable index)."""
    return [k for k, v in index.items() if len(v) == 3][:count]


def test_build_saves_a_loadable_quantizer(built):
    _, x, report = built
    q = load_quantizer(report["files"]["quantizer"])
    assert q.meta["quantizer"] == "rq_kmeans" and q.meta["embedding"] == {"model": "toy-8", "dim": 8}
    assert q.meta["collisions"]["dedup"] == "variable" and q.meta["items"] == N
    assert sorted(os.listdir(q.path)) == ["codebooks.npz", "codes.npy", "quantizer.json"]
    np.testing.assert_array_equal(q.fitted.encode(x), np.load(q.path / "codes.npy"))
    assert q.index_path.name == f"{CAT}.index.json"


def test_assign_reproduces_held_out_items_codes(built, tmp_path, capsys):
    """Remove items with unique SIDs from the index, assign them back: same SIDs, nobody moved."""
    out, x, report = built
    index = read_index(report["files"]["index"])
    held = _held_out(index)
    rest = {k: v for k, v in index.items() if k not in held}
    write_index(tmp_path / "rest.json", rest)
    np.save(tmp_path / "new.npy", x[[int(k) for k in held]])
    (tmp_path / "ids.txt").write_text("\n".join(held) + "\n")
    res = sid("index", "assign", "--quantizer-dir", report["files"]["quantizer"], "--embeddings",
              tmp_path / "new.npy", "--ids", tmp_path / "ids.txt", "--index", tmp_path / "rest.json",
              "--out", tmp_path / "merged.json", "--merged", "--embedding-model", "toy-8", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["items"] == len(held) and rep["collided"] == 0 and rep["dedup_tokens"] == 0
    assert read_index(tmp_path / "merged.json") == index  # same SIDs, same keys (order aside)
    # the same on the command line without --out prints the new items' index.json
    res = sid_here(capsys, "index", "assign", "--quantizer-dir", report["files"]["quantizer"], "--embeddings",
              tmp_path / "new.npy", "--ids", tmp_path / "ids.txt", "--index", tmp_path / "rest.json")
    assert res.returncode == 0, res.stderr
    assert {k: tuple(v) for k, v in json.loads(res.stdout).items()} == {k: index[k] for k in held}
    assert "40 new items: 0 collided" in res.stderr


def _fitted_and_index(built):
    _, x, report = built
    q = load_quantizer(report["files"]["quantizer"])
    return q, x, read_index(report["files"]["index"])


@pytest.mark.parametrize("dedup", ["variable", "fixed", "none"])
def test_duplicates_of_existing_items_are_resolved_the_configured_way(built, dedup):
    q, x, index = _fitted_and_index(built)
    rows = [0, 1, 2, 0]  # copies of existing items (the last one twice)
    ids = ["n0", "n1", "n2", "n3"]
    new, rep = assign_items(q.fitted, x[rows], ids=ids, index=index, settings={**q.settings, "dedup": dedup})
    assert rep["collided"] == 4 and rep["reassigned"] == 0
    for i, r in zip(ids, rows):
        assert new[i][:3] == index[str(r)][:3]
    if dedup == "none":
        assert rep["shared"] == 4 and rep["dedup_tokens"] == 0
        return
    group = [v for v in index.values() if v[:3] == index["0"][:3]]
    top = max(int(v[3][3:-1]) if len(v) > 3 else 0 for v in group)
    assert new["n0"][3] == f"<d_{top + 1}>" and new["n3"][3] == f"<d_{top + 2}>"
    every = list(index.values()) + list(new.values())
    assert max(Counter(every).values()) == 1 and rep["dedup_tokens"] == 4


def test_sinkhorn_setting_moves_new_items_to_the_nearest_free_code(built):
    q, x, index = _fitted_and_index(built)
    taken = {v[:3] for v in index.values()}
    used = Counter(v[:2] for v in taken)
    r = next(int(k) for k, v in index.items() if used[v[:2]] <= 5)  # >= 3 of 8 last codes free
    new, rep = assign_items(q.fitted, x[[r, r, r]], ids=["a", "b", "c"], index=index,
                            settings={**q.settings, "sinkhorn_rounds": 20, "dedup": "none"})
    assert rep["collided"] == 3 and rep["reassigned"] == 3 and rep["shared"] == 0
    assert len({new[k] for k in "abc"}) == 3 and not {new[k] for k in "abc"} & taken
    assert all(new[k][:2] == index[str(r)][:2] for k in "abc")  # only the last level moves
    d = q.fitted.distances(x[[r]], q.fitted.encode(x[[r]]), 2)[0]
    free = [c for c in np.argsort(d, kind="stable") if index[str(r)][:2] + (f"<c_{c}>",) not in taken]
    assert [new[k][2] for k in "abc"] == [f"<c_{c}>" for c in free[:3]]


@pytest.mark.slow
def test_rqvae_weights_round_trip_and_assign(tmp_path):
    x = embeddings(seed=3, dim=12)
    cfg = RqvaeConfig(codebook_sizes=[8, 8, 4], e_dim=4, layers=[16], epochs=6, eval_every=3, kmeans_iters=10)
    report = build_index(embeddings=x, data_dir=bundled_data_dir(), category=CAT, out=tmp_path / "data",
                         quantizer=build_rqvae(cfg), quantizer_name="rqvae", seed=0, dedup="fixed")
    q = load_quantizer(report["files"]["quantizer"])
    assert (q.path / "params.msgpack").is_file() and not (q.path / "codebooks.npz").exists()
    codes = np.load(q.path / "codes.npy")
    np.testing.assert_array_equal(q.fitted.encode(x), codes)
    index = read_index(report["files"]["index"])
    held = [k for k, v in index.items() if v[3] == "<d_0>"][:20]
    rest = {k: v for k, v in index.items() if k not in held}
    new, rep = assign_items(q.fitted, x[[int(k) for k in held]], ids=held, index=rest, settings=q.settings)
    assert rep["collided"] == 0 and new == {k: index[k] for k in held}


def test_assign_errors_are_one_line(built, tmp_path, capsys):
    out, x, report = built
    qdir = report["files"]["quantizer"]
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    res = sid_here(capsys, "index", "assign", "--quantizer-dir", qdir, "--embeddings", tmp_path / "bad.npy")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "bad.npy: dim 5, but the quantizer was fitted on dim 8" in res.stderr
    np.save(tmp_path / "ok.npy", x[:2])
    (tmp_path / "taken.json").write_text("{}")
    ok = ["index", "assign", "--quantizer-dir", qdir, "--embeddings", tmp_path / "ok.npy"]
    res = sid_here(capsys, *ok, "--out", tmp_path / "taken.json")
    assert res.returncode != 0 and "exists; pass --force" in res.stderr
    assert (tmp_path / "taken.json").read_text() == "{}"
    (tmp_path / "ids.txt").write_text("0\n1\n")
    res = sid_here(capsys, *ok, "--ids", tmp_path / "ids.txt")
    assert res.returncode == 1 and "item id 0 is already in" in res.stderr
    res = sid_here(capsys, "index", "assign", "--quantizer-dir", tmp_path, "--embeddings", ok[-1])
    assert res.returncode == 1 and "not a quantizer folder" in res.stderr
    with pytest.raises(DataError, match="quantizer.json.*version"):
        meta = json.loads((out / "data/index" / f"{CAT}.quantizer/quantizer.json").read_text())
        (tmp_path / "q").mkdir()
        (tmp_path / "q/quantizer.json").write_text(json.dumps({**meta, "version": 99}))
        load_quantizer(tmp_path / "q")


def test_a_quantizer_without_an_artefact_format_builds_without_saving(tmp_path, caplog):
    class Fitted:  # a third-party fitted quantizer: codes only
        codebook_sizes = (64, 64)

        def __init__(self, n):
            self.fit_codes = np.stack([np.arange(n) % 64, np.arange(n) // 64 % 64], 1).astype(np.int32)

    class Quantizer:
        def fit(self, x, *, seed):
            return Fitted(len(x))

    report = build_index(embeddings=embeddings(), data_dir=bundled_data_dir(), category=CAT, out=tmp_path,
                         quantizer=Quantizer(), quantizer_name="third_party")
    assert "quantizer" not in report["files"] and not (tmp_path / "index" / f"{CAT}.quantizer").exists()
    assert "no artefact format" in caplog.text
    assert len(read_index(report["files"]["index"])) == N
