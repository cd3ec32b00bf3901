"""A synthetic raw Amazon-2018 category (reviews + metadata JSON lines) that hits every quirk of
upstream's preprocessing: day-granular timestamps (many ties), repeated reviews (same user, item and
time; same user and item at another time), titles with HTML entities, ``<span id``, more than 20
words, quotes, one character or none, items missing from the metadata, repeated metadata lines,
list descriptions, nested and flat categories with ``</span>`` entries, ``by\\n`` brands, review
texts with tags, entities (``&amp;quot;``, ``&nbsp;``, numeric), non-ASCII and control characters,
missing texts. Used by the tests, ``bench/data_prep.py`` and the pipeline example.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PLAIN = ("good", "bad", "cable", "works", "fine", "the", "a", "meter", "glue", "tape", "it", "is", "and", "for",
         "this", "with", "great", "price", "quality", "would", "buy", "again", "not", "very", "small", "box")
QUIRKS = ("good", "bad", "cable", "works", "fine", "the", "a", "meter", "glue", "tape", "\u00e9t\u00e9", "caf\u00e9",
         "na\u00efve", "\u2019s", "\U0001F600", "&amp;", "&quot;ok&quot;", "&amp;quot;x&amp;quot;", "&nbsp;",
         "&#39;", "&lt;b&gt;", "<br />", "<a href=\"x\">link</a>", "5\"", "back\\slash", "tab\there",
         "line\nbreak", "\x1cfs", "\u00a0nbsp", "&eacute;t&eacute;", "&notit;", "&#x1F600;", "<", ">",
          "\ud83d")  # the last: a lone surrogate (JSON "\\ud83d"), as truncated emoji in real dumps
DAY = 86400


def _text(rng: random.Random, lo: int, hi: int, quirk: float = 0.3) -> str:
    words = (rng.choice(QUIRKS) if rng.random() < quirk else rng.choice(PLAIN) for _ in range(rng.randint(lo, hi)))
    return " ".join(w for w in words if getattr(rng, "lone_surrogates", True) or w != "\ud83d")


class _Rng(random.Random):
    """The generator's random source, carrying whether lone surrogates may be written."""

    lone_surrogates = True


def _title(rng: random.Random, n: int) -> object:
    kind = rng.random()
    base = f"Item {n} " + _text(rng, 1, 6)
    if kind < 0.03:
        return None  # no title key
    if kind < 0.05:
        return f"<span id=\"x\">{base}</span>"
    if kind < 0.08:
        return " ".join(["word"] * rng.randint(20, 24))  # 20 words pass, 21+ do not
    if kind < 0.10:
        return rng.choice(["x", "", " \" ", "\"\"y\"\""])
    if kind < 0.20:
        return f" \"{base} &quot;Pro&quot; &amp; more\" "
    return base


def _meta(rng: random.Random, asin: str, n: int) -> dict:
    rec: dict = {"asin": asin, "price": "$1.00", "also_buy": [f"B{rng.randint(0, 99)}"]}
    title = _title(rng, n)
    if title is not None:
        rec["title"] = title
    r = rng.random()
    if r < 0.4:
        rec["description"] = [_text(rng, 0, 5), _text(rng, 1, 5)]
    elif r < 0.7:
        rec["description"] = _text(rng, 1, 9)
    elif r < 0.8:
        rec["description"] = []
    r = rng.random()
    if r < 0.3:
        rec["brand"] = "by\n    Acme " + rng.choice(["", "Co", "&amp; Sons"])
    elif r < 0.7:
        rec["brand"] = rng.choice(["Acme", " Zed ", ""])
    r = rng.random()
    if r < 0.35:
        rec["categories"] = [["Industrial", " Tools "], ["Lab", "<span class=\"x\">y</span>"]]
    elif r < 0.7:
        rec["categories"] = ["Office", " Paper ", "</span>bad"]
    elif r < 0.8:
        rec["categories"] = []
    rec["category"] = ["Office", "Paper"]
    return rec


def write_amazon18(folder: str | Path, *, n_reviews: int, n_users: int | None = None,
                   n_items: int | None = None, seed: int = 0, years: tuple[int, int] = (1994, 2018),
                   name: str = "Synthetic", quirk: float = 0.3, lone_surrogates: bool = True) -> tuple[Path, Path]:
    """Write ``folder/NAME.json`` (reviews) and ``folder/meta_NAME.json``; return their paths.

    `quirk` is the share of review-text words drawn from the quirky ones (entities, tags, non-ASCII,
    control characters; lone surrogates unless `lone_surrogates` is False: upstream's convert_dataset.py
    cannot write those titles); the rest are plain ASCII words."""
    rng = _Rng(seed)
    rng.lone_surrogates = lone_surrogates
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_users = n_users or max(4, n_reviews // 8)
    n_items = n_items or max(4, n_reviews // 12)
    lo = json_day(years[0])
    hi = json_day(years[1] + 1)
    reviews_path, meta_path = folder / f"{name}.json", folder / f"meta_{name}.json"
    users = [f"U{rng.randrange(16 ** 8):08X}{u}" for u in range(n_users)]
    items = [f"B{i:09d}" for i in range(n_items)]
    with open(reviews_path, "w") as fh:
        prev = None
        for _ in range(n_reviews):
            r = rng.random()
            if prev is not None and r < 0.02:
                rec = dict(prev)  # the same review again
            elif prev is not None and r < 0.04:
                rec = dict(prev, unixReviewTime=prev["unixReviewTime"] + DAY * rng.randint(0, 3))
            else:
                u = int(n_users * rng.random() ** 2)  # skewed activity and popularity
                i = int(n_items * rng.random() ** 2.5)
                rec = {"overall": float(rng.randint(1, 5)), "verified": True,
                       "reviewTime": "01 1, 2015", "reviewerID": users[u], "asin": items[i],
                       "reviewerName": "Someone", "unixReviewTime": lo + DAY * rng.randrange((hi - lo) // DAY)}
                if rng.random() < 0.97:
                    rec["reviewText"] = _text(rng, 0, 60, quirk)
                if rng.random() < 0.95:
                    rec["summary"] = _text(rng, 0, 6, quirk)
                if rng.random() < 0.2:
                    rec["style"] = {"Size:": " 3 Pack"}
            prev = rec
            fh.write(json.dumps(rec) + "\n")
    with open(meta_path, "w") as fh:
        for n, asin in enumerate(items):
            if rng.random() < 0.05:
                continue  # reviewed but absent from the metadata
            fh.write(json.dumps(_meta(rng, asin, n)) + "\n")
            if rng.random() < 0.03:
                fh.write(json.dumps(_meta(rng, asin, n)) + "\n")  # the same asin again
    return reviews_path, meta_path


def json_day(year: int) -> int:
    import calendar

    return calendar.timegm((year, 1, 1, 0, 0, 0))


def write_amazon23(folder: str | Path, *, n_reviews: int, seed: int = 0, name: str = "Synthetic",
                   quirk: float = 0.3) -> tuple[Path, Path]:
    """The same kind of category in the Amazon Reviews 2023 layout: ``folder/NAME.jsonl`` and
    ``folder/meta_NAME.jsonl`` (ms timestamps, ``parent_asin``, store / features / details / images,
    nulls where the real dumps have them)."""
    rng = random.Random(seed)
    src = Path(folder) / "_2018"
    r18, m18 = write_amazon18(src, n_reviews=n_reviews, seed=seed, name=name, quirk=quirk)
    reviews_path, meta_path = Path(folder) / f"{name}.jsonl", Path(folder) / f"meta_{name}.jsonl"
    with open(r18) as fin, open(reviews_path, "w") as fh:
        for line in fin:
            r = json.loads(line)
            rec = {"rating": r["overall"], "title": r.get("summary", ""), "text": r.get("reviewText", ""),
                   "images": [], "asin": r["asin"] + "X", "parent_asin": r["asin"], "user_id": r["reviewerID"],
                   "timestamp": r["unixReviewTime"] * 1000 + rng.choice([0, 0, 999, rng.randrange(1000)]),
                   "helpful_votes": rng.randint(0, 3), "verified_purchase": rng.random() < 0.8}
            if rng.random() < 0.03:
                del rec["helpful_votes"], rec["verified_purchase"]
            fh.write(json.dumps(rec) + "\n")
    with open(m18) as fin, open(meta_path, "w") as fh:
        for line in fin:
            m = json.loads(line)
            desc = m.get("description", [])
            rec = {"main_category": "Industrial", "title": m.get("title", ""), "average_rating": 4.1,
                   "features": [_text(rng, 0, 4, quirk) for _ in range(rng.randint(0, 3))],
                   "description": desc if isinstance(desc, list) else [desc],
                   "price": None,
                   "images": [{"thumb": "t.jpg", "large": "l.jpg", "hi_res": rng.choice([None, "h.jpg"])},
                              {"thumb": "t2.jpg"}][: rng.randint(0, 2)],
                   "store": rng.choice([None, "Acme", " Zed &amp; Co ", ""]),
                   "categories": [c for c in m.get("categories", []) if isinstance(c, str)],
                   "details": {"Brand": "Acme", "Weight": "1 lb"} if rng.random() < 0.5 else {},
                   "parent_asin": m["asin"]}
            if rng.random() < 0.02:
                del rec["title"]
            fh.write(json.dumps(rec) + "\n")
    return reviews_path, meta_path
