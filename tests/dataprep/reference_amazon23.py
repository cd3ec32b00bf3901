"""A plain-Python transcription of the BEHAVIOUR of ``data/amazon23_data_process.py`` as public
MiniOneRec forks carry it (HJH645/MiniOneRec, zzzzzap111/MiniOneRec: the same file).

Reviews: lines that fail to parse or convert are skipped, as are lines without ``parent_asin`` or
``user_id``; ``timestamp`` (ms) floored to seconds (missing -> 0); title/text cleaned on load (this
script's clean_text: tags, html.unescape, whitespace) and cleaned again for review.json. Metadata:
last line per ``parent_asin`` kept whole; the item counts as titled when some line's cleaned title is
non-empty. Window (both bounds non-zero) and k-core (user_k for both) as the Amazon-2018 script, no
year back-off; numbering, sequences, split and ``.inter`` files identical. Month boundaries in UTC
(upstream: local time), as sid.
"""

from __future__ import annotations

import collections
import html
import json
import os
import re

from tests.dataprep.reference_amazon18 import k_core, month_start


def clean_text(text):
    if not text:
        return ""
    text = re.sub(r"<[^>]+>", "", str(text))
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def load_reviews(path):
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                r = json.loads(line.strip())
                if r.get("parent_asin") is None or "user_id" not in r:
                    continue
                try:
                    ts = int(r.get("timestamp", 0) // 1000)
                except Exception:
                    ts = 0
                out.append({"reviewerID": r["user_id"], "asin": r["parent_asin"], "rating": float(r.get("rating", 0)),
                            "summary": clean_text(r.get("title", "")), "text": clean_text(r.get("text", "")),
                            "unixReviewTime": ts, "verified": bool(r.get("verified_purchase", False)),
                            "votes": int(r.get("helpful_votes", 0))})
            except Exception:
                continue
    return out


def load_meta(path):
    metas, titles = {}, {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                m = json.loads(line.strip())
            except Exception:
                continue
            asin = m.get("parent_asin")
            if asin is None:
                continue
            title = clean_text(m.get("title", ""))
            metas[asin] = dict(m, title=title, description=m.get("description", []),
                               features=m.get("features", []), categories=m.get("categories", []),
                               details=m.get("details", {}), store=m.get("store", ""), images=m.get("images", []))
            if len(title) > 0:
                titles[asin] = title
    return metas, titles


def features_of(m):
    desc = m["description"]
    desc = " ".join(clean_text(d) for d in desc) if isinstance(desc, list) else clean_text(desc)
    feats = m["features"]
    feats = " ".join(clean_text(f) for f in feats) if isinstance(feats, list) else clean_text(str(feats))
    cats = m["categories"]
    cats = ", ".join(clean_text(c) for c in cats) if isinstance(cats, list) else clean_text(str(cats))
    urls = []
    for img in m["images"]:
        if isinstance(img, dict):
            if "hi_res" in img:
                urls.append(img["hi_res"])
            elif "large" in img:
                urls.append(img["large"])
            elif "thumb" in img:
                urls.append(img["thumb"])
    return {"title": clean_text(m["title"]), "description": desc, "features": feats, "categories": cats,
            "brand": clean_text(m["store"]), "details": m["details"], "images": urls}


def run(reviews_path, meta_path, dataset, out_root, *, user_k=5, start=(1996, 1), end=(2025, 1)):
    metas, titles = load_meta(meta_path)
    reviews = load_reviews(reviews_path)
    kept, _ = k_core(reviews, titles, user_k, month_start(*start), month_start(*end))
    by_user = collections.defaultdict(list)
    for r in kept:
        by_user[r["reviewerID"]].append(r)
    user_ids, item_ids, seqs, rows = {}, {}, {}, []
    for user, rs in by_user.items():
        rs.sort(key=lambda r: r["unixReviewTime"])
        user_ids[user] = len(user_ids)
        for r in rs:
            item_ids.setdefault(r["asin"], len(item_ids))
        ids = [item_ids[r["asin"]] for r in rs]
        seqs[user_ids[user]] = ids
        for i in range(1, len(rs)):
            rows.append((user_ids[user], ids[max(i - 10, 0):i], ids[i], rs[i]["unixReviewTime"]))
    rows.sort(key=lambda t: t[3])
    folder = os.path.join(out_root, dataset)
    os.makedirs(folder, exist_ok=True)
    n = len(rows)
    for split, part in (("train", rows[:int(n * 0.8)]), ("valid", rows[int(n * 0.8):int(n * 0.9)]),
                        ("test", rows[int(n * 0.9):])):
        with open(os.path.join(folder, f"{dataset}.{split}.inter"), "w") as fh:
            fh.write("user_id:token\titem_id_list:token_seq\titem_id:token\n")
            for uid, hist, target, _ in part:
                fh.write(f"{uid}\t{' '.join(str(x) for x in hist[-50:])}\t{target}\n")
    reviews_out = {}
    for r in kept:
        reviews_out[str((user_ids[r["reviewerID"]], item_ids[r["asin"]], r["unixReviewTime"]))] = {
            "review": clean_text(r["text"]), "summary": clean_text(r["summary"]), "helpful_votes": r["votes"],
            "verified": r["verified"]}
    for name, obj in (("inter.json", seqs), ("item.json", {i: features_of(metas[a]) for a, i in item_ids.items()}),
                      ("review.json", reviews_out)):
        with open(os.path.join(folder, f"{dataset}.{name}"), "w") as fh:
            json.dump(obj, fh, indent=2)
    for name, mapping in (("user2id", user_ids), ("item2id", item_ids)):
        with open(os.path.join(folder, f"{dataset}.{name}"), "w") as fh:
            for key, value in mapping.items():
                fh.write(f"{key}\t{value}\n")
