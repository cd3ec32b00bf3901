"""A plain-Python transcription of the BEHAVIOUR of MiniOneRec's ``data/amazon18_data_process.py``.

Written from a reading of upstream (AkaliKong/MiniOneRec ``81b4ba9``), with its pure-Python loops,
so that tests and ``bench/data_prep.py`` can hold ``sid data amazon18`` against it. Each step keeps
upstream's order of operations and quirks:

- metadata: a title that is missing or holds ``<span id`` drops the item; ``&quot;``/``&amp;`` are
  replaced, then spaces and then double quotes are stripped; a title of length <= 1 or of more than 20
  ``split(" ")`` pieces drops the item; a later line of the same asin overwrites the title;
- k-core: items without a kept title are removed first; then passes over the reviews (time window
  checked inside every pass, only when both bounds are non-zero) remove every user and item with fewer
  than ``K`` kept reviews (``K`` = user_k for both) until a pass removes nothing;
- year back-off: while the start year is > 1996 and fewer than 3000 items remain, the start moves one
  year back and the k-core is redone from all reviews;
- users are numbered in order of first kept review; each user's reviews are sorted stably by time;
  items are numbered walking users in that order;
- every review after a user's first is a target with the previous <= 10 as history; targets are
  sorted stably by time; the first int(0.8 n) are train, up to int(0.9 n) valid, the rest test;
- review.json keys are ``str((uid, iid, unixReviewTime))``; item.json takes the item's title and the
  last metadata line of its asin (description through clean_text, ``by\\n`` removed from brand,
  ``categories`` flattened, ``</span>`` entries dropped).

It also does upstream's invisible work (the interaction tuples, the 11-field rows with titles,
ratings and times), so that ``bench/data_prep.py`` times what upstream computes; only its torch
import and tqdm bars are left out. The one deliberate difference from upstream: month boundaries are taken in UTC (upstream uses the
machine's local time), exactly as sid does.
"""

from __future__ import annotations

import calendar
import collections
import html
import json
import os
import re


def clean_text(text):
    if not text:
        return ""
    text = re.sub(r"<[^>]+>", "", str(text))
    text = html.unescape(text)
    text = text.replace("&quot;", '"').replace("&amp;", "&")
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def month_start(year, month):
    return calendar.timegm((year, month, 1, 0, 0, 0))


def read_jsonl(path):
    out = []
    with open(path) as fh:
        for line in fh:
            out.append(json.loads(line))
    return out


def titles_of(metadata):
    kept = {}
    for meta in metadata:
        if "title" not in meta or meta["title"].find("<span id") > -1:
            continue
        title = meta["title"].replace("&quot;", '"').replace("&amp;", "&").strip(" ").strip('"')
        meta["title"] = title
        if len(title) > 1 and len(title.split(" ")) <= 20:
            kept[meta["asin"]] = title
    return kept


def k_core(reviews, kept_titles, k, start, end):
    gone_users, gone_items = set(), set()
    for review in reviews:
        if review["asin"] not in kept_titles:
            gone_items.add(review["asin"])
    while True:
        survivors, changed = [], False
        user_n, item_n = {}, {}
        for review in reviews:
            if start and end:
                ts = int(review["unixReviewTime"])
                if ts < start or ts > end:
                    continue
            if review["reviewerID"] in gone_users or review["asin"] in gone_items:
                continue
            user_n[review["reviewerID"]] = user_n.get(review["reviewerID"], 0) + 1
            item_n[review["asin"]] = item_n.get(review["asin"], 0) + 1
            survivors.append(review)
        for user, n in user_n.items():
            if n < k:
                gone_users.add(user)
                changed = True
        for item, n in item_n.items():
            if n < k:
                gone_items.add(item)
                changed = True
        if not changed:
            return survivors, item_n
        reviews = survivors


def numbering(reviews):
    """Upstream's convert_inters2dict: numbering, per-user sequences, and its (unused) interaction
    tuples, built as upstream builds them (the benchmark times the same work)."""
    by_user = collections.defaultdict(list)
    for review in reviews:
        by_user[review["reviewerID"]].append(review)
    for rows in by_user.values():
        rows.sort(key=lambda r: int(r["unixReviewTime"]))
    user_ids, item_ids, sequences, interactions = {}, {}, {}, []
    for user, rows in by_user.items():
        user_ids[user] = len(user_ids)
        seq = []
        for r in rows:
            item_ids.setdefault(r["asin"], len(item_ids))
            seq.append(r["asin"])
            interactions.append((user, r["asin"], float(r["overall"]), int(r["unixReviewTime"])))
        sequences[user_ids[user]] = [item_ids[a] for a in seq]
    return user_ids, item_ids, sequences


def targets(reviews, item_ids, titles, history=10):
    """Upstream's generate_interaction_list: per-user field lists in review order, zipped, sorted by
    time, one 11-field row per target (asins, ids, titles, ratings, times of the history and the
    target), then all rows sorted by the target's time."""
    per_user = {}
    for r in reviews:
        d = per_user.setdefault(r["reviewerID"], {"items": [], "ratings": [], "ts": [], "ids": [], "titles": []})
        d["items"].append(r["asin"])
        d["ratings"].append(r["overall"])
        d["ts"].append(r["unixReviewTime"])
        d["ids"].append(item_ids[r["asin"]])
        d["titles"].append(titles[r["asin"]])
    out = []
    for user, d in per_user.items():
        rows = sorted(zip(d["items"], d["ratings"], d["ts"], d["ids"], d["titles"]), key=lambda x: int(x[2]))
        items, ratings, ts, ids, tit = (list(c) for c in zip(*rows))
        for i in range(1, len(items)):
            st = max(i - history, 0)
            out.append([user, items[st:i], items[i], ids[st:i], ids[i], tit[st:i], tit[i], ratings[st:i],
                        ratings[i], ts[st:i], ts[i]])
    out.sort(key=lambda x: int(x[-1]))
    return out


def item_features(metadata, item_ids, kept_titles):
    last_meta = {m["asin"]: m for m in metadata}
    out = {}
    for asin, iid in item_ids.items():
        meta = last_meta[asin]
        desc = meta.get("description", "")
        desc = clean_text(desc) if desc else ""
        brand = meta.get("brand", "").replace("by\n", "").strip()
        cats = meta.get("categories", [])
        if cats and len(cats) > 0:
            if isinstance(cats[0], list):
                flat = []
                for group in cats:
                    flat.extend(group)
                cats = flat
            cats = ",".join(str(c).strip() for c in cats if "</span>" not in str(c)).strip()
        else:
            cats = ""
        out[iid] = {"title": kept_titles[asin], "description": desc, "brand": brand, "categories": cats}
    return out


def review_data(reviews, user_ids, item_ids):
    out = {}
    for r in reviews:
        key = str((user_ids[r["reviewerID"]], item_ids[r["asin"]], r["unixReviewTime"]))
        text = clean_text(r["reviewText"]) if "reviewText" in r else ""
        summary = clean_text(r["summary"]) if "summary" in r else ""
        out[key] = {"review": text, "summary": summary}
    return out


def run(reviews_path, meta_path, dataset, out_root, *, user_k=5, start=(1996, 10), end=(2018, 11)):
    """Write ``out_root/dataset/`` the way upstream does (UTC month boundaries)."""
    reviews = read_jsonl(reviews_path)
    st_year, st_month = start
    end_ts = month_start(*end)
    while True:
        metadata = read_jsonl(meta_path)
        kept_titles = titles_of(metadata)
        survivors, item_n = k_core(reviews, kept_titles, user_k, month_start(st_year, st_month), end_ts)
        if st_year > 1996 and len(item_n) < 3000:
            st_year -= 1
            continue
        break
    user_ids, item_ids, sequences = numbering(survivors)
    rows = targets(survivors, item_ids, kept_titles)
    folder = os.path.join(out_root, dataset)
    os.makedirs(folder, exist_ok=True)
    n = len(rows)
    parts = {"train": rows[: int(n * 0.8)], "valid": rows[int(n * 0.8): int(n * 0.9)],
             "test": rows[int(n * 0.9):]}
    for split, part in parts.items():
        with open(os.path.join(folder, f"{dataset}.{split}.inter"), "w") as fh:
            fh.write("user_id:token\titem_id_list:token_seq\titem_id:token\n")
            for row in part:
                fh.write(f"{user_ids[row[0]]}\t{' '.join([str(x) for x in row[3]][-50:])}\t{row[4]}\n")

    def dump(obj, name):
        with open(os.path.join(folder, f"{dataset}.{name}"), "w") as fh:
            json.dump(obj, fh, indent=2)

    dump(sequences, "inter.json")
    dump(item_features(metadata, item_ids, kept_titles), "item.json")
    dump(review_data(survivors, user_ids, item_ids), "review.json")
    for name, mapping in (("user2id", user_ids), ("item2id", item_ids)):
        with open(os.path.join(folder, f"{dataset}.{name}"), "w") as fh:
            for key, value in mapping.items():
                fh.write(f"{key}\t{value}\n")
