"""Writing one ``.inter`` folder (upstream's eight files) from numbered events, through `Outputs`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from sidcore.dataprep import core
from sidcore.dataprep.output import Chunks, Outputs, indented_lists, indented_records, tsv_pairs
from sidcore.dataprep.text import json_strings
from sidcore.dataprep.output import dump_indented

INTER_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"
CHUNK = 1 << 20  # .inter lines built per chunk of targets (bounded memory)


def _review_json(num: core.Numbered, ts_repr: pl.Series, cols: dict[str, pl.Series]) -> str:
    """review.json: key ``str((uid, iid, ts))`` per kept event in input order; a repeated key keeps
    its first position and its last value (a Python dict's behaviour)."""
    uid = pl.Series("uid", num.uid).cast(pl.String)
    iid = pl.Series("iid", num.iid).cast(pl.String)
    keys = pl.DataFrame({"u": uid, "i": iid, "t": ts_repr}).select(
        pl.concat_str([pl.lit('"('), "u", pl.lit(", "), "i", pl.lit(", "), "t", pl.lit(')"')]).alias("key")
    )["key"]
    frame = pl.DataFrame({"key": keys, **{f"c{n}": c for n, c in enumerate(cols.values())}})
    if keys.is_duplicated().any():
        frame = frame.group_by("key", maintain_order=True).agg(pl.all().last())
    fields = {name: frame[f"c{n}"] for n, name in enumerate(cols)}
    return indented_records(frame["key"], fields)


def json_values(col: pl.Series) -> pl.Series:
    """JSON text of each value of a String / integer / Boolean column (json.dumps')."""
    if col.dtype == pl.String:
        return json_strings(col)
    if col.dtype == pl.Boolean:
        return pl.select(pl.when(pl.lit(col)).then(pl.lit("true")).otherwise(pl.lit("false"))).to_series()
    if col.dtype.is_integer():
        return col.cast(pl.String)
    raise TypeError(f"no JSON rendering for {col.dtype}")


def utf8_ok(text: str) -> bool:
    """False for a str holding a lone surrogate (Python's json reads ``"\\ud83d"`` so; polars cannot
    hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def records_json(records: list[dict]) -> bytes:
    """``json.dump({"0": records[0], "1": ...}, indent=2)``; fast when every value is a string.

    A column holding a lone surrogate (which polars cannot hold) is encoded value by value with
    Python's own ``json.dumps`` (its C string encoder; the result is ASCII), the others column-wise;
    only records of other shapes take the whole-object ``json.dumps(indent=2)`` (pure Python, slow)."""
    names = list(records[0]) if records else []
    if records and all(list(r) == names and all(isinstance(v, str) for v in r.values()) for r in records):
        keys = '"' + pl.Series(range(len(records))).cast(pl.String) + '"'
        cols = {}
        for n in names:
            values = [r[n] for r in records]
            if all(utf8_ok(v) for v in values):
                cols[n] = json_strings(pl.Series(values, dtype=pl.String))
            else:
                cols[n] = pl.Series([json.dumps(v) for v in values], dtype=pl.String)
        return indented_records(keys, cols)
    return dump_indented({str(i): r for i, r in enumerate(records)}).encode()


def write_layout(outputs: Outputs, folder: Path, dataset: str, num: core.Numbered, *, users: pl.Series,
                 items: pl.Series, ts_repr, review_cols: dict[str, pl.Series] | None,
                 item_json: bytes, max_history: int = 10, pre_encoded: tuple[str, ...] = ()) -> dict[str, int]:
    """Stage and publish the folder. `users` is the user column of all events (`num.rows` index it),
    `ts_repr` the review-key time text per kept event (only read with `review_cols`), `items` the raw
    item id of each item number, `review_cols` the review.json value fields per kept event (None: no
    review.json; the fields named in `pre_encoded` hold JSON text already)."""
    n = len(num.target_order)
    a, b = core.split_bounds(n)
    with outputs:
        outputs.remove_unwritten()  # e.g. an old review.json when this run writes none
        for split, part in (("train", num.target_order[:a]), ("valid", num.target_order[a:b]),
                            ("test", num.target_order[b:])):
            chunks = [part[i:i + CHUNK] for i in range(0, len(part), CHUNK)]
            make = (lambda chunks: lambda i: core.inter_lines(num, chunks[i], max_history=max_history))(chunks)
            outputs.write(folder / f"{dataset}.{split}.inter",
                          [(INTER_HEADER + "\n").encode(), Chunks(len(chunks), make)])
        seq = pl.DataFrame({"u": num.uid[num.by_user], "i": num.iid[num.by_user]})
        grouped = seq.group_by("u", maintain_order=True).agg(
            pl.col("i").cast(pl.String).str.join(",\n    "))
        outputs.write(folder / f"{dataset}.inter.json",
                      indented_lists('"' + grouped["u"].cast(pl.String) + '"', grouped["i"]))
        outputs.write(folder / f"{dataset}.item.json", item_json)
        if review_cols is not None:
            encoded = {k: v if k in pre_encoded else json_values(v) for k, v in review_cols.items()}
            outputs.write(folder / f"{dataset}.review.json", _review_json(num, ts_repr(), encoded))
        starts = num.by_user[num.pos == 0]
        outputs.write(folder / f"{dataset}.user2id",
                      tsv_pairs(users.gather(num.rows[starts]), pl.Series(num.uid[starts])))
        outputs.write(folder / f"{dataset}.item2id",
                      tsv_pairs(items, pl.Series(range(len(items)))))
    return {"users": num.n_users, "items": num.n_items, "events": len(num.rows), "train": a,
            "valid": b - a, "test": n - b}
