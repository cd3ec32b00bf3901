"""`sid index build --inter-dir DIR/NAME`: items from upstream's ``NAME.item.json`` (the output of
``data/amazon18_data_process.py`` / ``sid data amazon18``), writing ``OUT/NAME.index.json`` (what
``convert_dataset.py`` / ``sid data convert`` read) and the saved quantizer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from sid_quantizers.artefact import load_quantizer
from sidcore.data.minionerec import read_index


def sid_here(capsys, *args):
    from sidcore.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        rc = 0
    except SystemExit as exc:
        rc = exc.code or 0
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def _inter_folder(root, name, ids):
    folder = root / name
    folder.mkdir(parents=True)
    items = {str(i): {"title": f"item {i}", "description": "", "brand": "", "categories": ""} for i in ids}
    (folder / f"{name}.item.json").write_text(json.dumps(items, indent=2))
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (folder / f"{name}.train.inter").write_text(header + "0\t1\t2\n")
    return folder


def test_build_from_an_inter_folder_writes_name_index_json(tmp_path, capsys):
    n = 300
    folder = _inter_folder(tmp_path, "Toys", range(n))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "e.npy", rng.normal(size=(n, 6)).astype(np.float32))
    args = ["index", "build", "--inter-dir", folder, "--embeddings", tmp_path / "e.npy", "--out", folder,
            "--quantizer", "rq_kmeans_balanced", "--dedup", "variable", "--code-offset", "1",
            "codebook_sizes=[8,8,4]", "max_iter=10", "n_init=1"]
    res = sid_here(capsys, *args)
    assert res.returncode == 0, res.stderr
    index = read_index(folder / "Toys.index.json")
    assert list(index) == [str(i) for i in range(n)]
    assert all(t[0].startswith("<a_") and 1 <= int(t[0][3:-1]) <= 8 for t in index.values())  # 1-based codes
    assert len({"".join(v) for v in index.values()}) == n
    q = load_quantizer(folder / "Toys.quantizer")
    assert q.meta["quantizer"] == "rq_kmeans_balanced" and q.index_path == folder / "Toys.index.json"
    assert (folder / "Toys.build.json").is_file() and (folder / "Toys.train.inter").is_file()
    # the user's index.json is not replaced without --force
    before = (folder / "Toys.index.json").read_text()
    res = sid_here(capsys, *args)
    assert res.returncode != 0 and "Toys.index.json exists; pass --force" in res.stderr
    assert (folder / "Toys.index.json").read_text() == before
    assert sid_here(capsys, *args, "--force").returncode == 0


def test_inter_ids_with_gaps_key_rows_in_id_order(tmp_path, capsys):
    ids = [0, 1, 2, 5, 7, 8, 9, 10, 11, 12, 20, 21]  # items without metadata are absent upstream
    folder = _inter_folder(tmp_path, "Shop", ids)
    np.save(tmp_path / "e.npy", np.arange(len(ids) * 2, dtype=np.float32).reshape(-1, 2))
    res = sid_here(capsys, "index", "build", "--inter-dir", folder, "--dataset", "Shop", "--embeddings",
                   tmp_path / "e.npy", "--out", tmp_path / "o", "codebook_sizes=[3,2]")
    assert res.returncode == 0, res.stderr
    index = read_index(tmp_path / "o" / "Shop.index.json")
    assert list(index) == [str(i) for i in ids]
    codes = np.load(tmp_path / "o" / "Shop.quantizer" / "codes.npy")
    assert ["".join(index[str(i)]) for i in ids] == [f"<a_{a}><b_{b}>" for a, b in codes]


def test_inter_errors_are_one_line(tmp_path, capsys):
    folder = _inter_folder(tmp_path, "Toys", range(10))
    np.save(tmp_path / "e.npy", np.zeros((9, 3), np.float32))
    base = ["index", "build", "--embeddings", tmp_path / "e.npy", "--out", tmp_path / "o"]
    res = sid_here(capsys, *base, "--inter-dir", folder)
    assert res.returncode == 1 and "e.npy: 9 rows but Toys.item.json has 10 items" in res.stderr
    res = sid_here(capsys, *base, "--inter-dir", tmp_path / "nope")
    assert res.returncode == 1 and "nope.item.json: file not found" in res.stderr
    res = sid_here(capsys, *base, "--inter-dir", folder, "--category", "X")
    assert res.returncode == 2 and "not both" in res.stderr
    (folder / "Toys.item.json").write_text(json.dumps({"0": {}, "a1": {}}))
    res = sid_here(capsys, *base, "--inter-dir", folder)
    assert res.returncode == 1 and "Toys.item.json [a1]: item ids must be integers" in res.stderr
    assert not (tmp_path / "o").exists()
