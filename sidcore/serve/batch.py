"""``sid recommend``: a file of user histories -> a JSONL file of ranked items, in input order, resumable.

The whole input is read and checked first (no decode before every line is known good or, with
``--on-bad-line skip``, known bad), then decoded in chunks of input lines. Each finished chunk is
appended to ``OUT.part`` (one write, flushed and fsynced) whose first line is the job's fingerprint
(input size and SHA-256, model source, options); the final ``OUT`` appears by one rename when every
line is written. A killed job rerun with the same command finds ``OUT.part``, drops a torn last line,
and continues after the last input line it holds, so no line is written twice; a ``.part`` of another
job is an error (``--overwrite`` starts over). An existing ``OUT`` is never replaced without
``--overwrite``.

Output lines: ``{"line", "user_id", "items": [{"item_id", "sid", "title", "score"}, ...]}``; a bad
line skipped is ``{"line", "user_id", "error"}`` in its place (and a warning on stderr), never dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
from pathlib import Path
from typing import Any, Iterator

import attrs

from sidcore.errors import DataError, UsageError
from sidcore.serve.inputs import BadInput, Query, csv_records, json_records

log = logging.getLogger(__name__)

FORMAT = "sid-recommend/1"


@attrs.frozen(kw_only=True)
class Line:
    """One input line: its number and a `Query`, or the `BadInput` it raised."""

    number: int
    query: Query | None
    error: BadInput | None = None
    user_id: str | None = None


def _open_text(path: Path) -> Iterator[str]:
    opener = lzma.open if path.suffix == ".xz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            yield from fh
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None


def read_lines(path: Path, recommender: Any, *, history_field: str | None) -> list[Line]:
    """Every record of a ``.jsonl``/``.csv`` file (optionally ``.xz``), parsed and resolved."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    stem = path.name[:-3] if path.suffix == ".xz" else path.name
    if stem.endswith(".csv"):
        records = csv_records(_open_text(path))
    elif stem.endswith((".jsonl", ".json")):
        records = json_records(_open_text(path))
    else:
        raise UsageError(f"--input {path}: expected a .jsonl or .csv file (optionally .xz)")
    out = []
    for number, rec in records:
        user = rec.get("user_id") if isinstance(rec, dict) else None
        user = None if user is None else str(user)
        if isinstance(rec, BadInput):
            out.append(Line(number=number, query=None, error=rec, user_id=user))
            continue
        try:
            out.append(Line(number=number, query=recommender.parse(rec, history_field=history_field), user_id=user))
        except BadInput as exc:
            out.append(Line(number=number, query=None, error=exc, user_id=user))
    return out


def fingerprint(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"format": FORMAT, "input": str(path.resolve()), "input_bytes": path.stat().st_size,
            "input_sha256": h.hexdigest(), **options}


def _resume_point(part: Path, job: dict[str, Any], overwrite: bool) -> int:
    """The last input line ``part`` holds (0: start over, header written); torn tails are cut off."""
    if part.exists() and not overwrite:
        with part.open("rb") as fh:
            data = fh.read()
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if header != {"sid_recommend_job": job}:
            raise UsageError(f"{part} holds a different job's output (other input, model or options); pass "
                             "--overwrite to start over, or remove it")
        if end != len(data):
            with part.open("r+b") as fh:
                fh.truncate(end)
        return int(json.loads(lines[-1])["line"]) if len(lines) > 1 else 0
    with part.open("wb") as fh:
        fh.write(json.dumps({"sid_recommend_job": job}).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return 0


def run_recommend(recommender: Any, *, input_path: Path, out: Path, on_bad_line: str, overwrite: bool,
                  history_field: str | None, source: str, chunk: int | None = None) -> dict[str, int]:
    """Write ``out`` (see the module docstring); returns counts ``{"lines", "users", "bad", "short", "resumed"}``."""
    from sidcore.progress import Progress

    if out.exists() and not overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it")
    if out.resolve() == input_path.resolve():
        raise UsageError("--out must not be the --input file")
    lines = read_lines(input_path, recommender, history_field=history_field)
    bad = [ln for ln in lines if ln.error is not None]
    if bad and on_bad_line == "error":
        first = bad[0]
        more = f" ({len(bad) - 1} more bad lines; --on-bad-line skip writes them as errors)" if len(bad) > 1 else ""
        raise DataError(f"{input_path}:{first.number}: {first.error}{more}")
    for ln in bad:
        log.warning("%s:%d: %s (skipped)", input_path, ln.number, ln.error)
    r = recommender
    job = fingerprint(input_path, {"source": source, "num_beams": r.num_beams, "top_k": r.top_k,
                                   "exclude_history": r.exclude_history, "catalog_size": r.catalog_size,
                                   "history_field": history_field})
    part = out.with_name(out.name + ".part")
    done = _resume_point(part, job, overwrite)
    todo = [ln for ln in lines if ln.number > done]
    if done:
        log.info("resuming %s after input line %d (%d lines left)", part, done, len(todo))
    step = chunk or max(r.batch_sizes[-1] * 8, 64)
    short = 0
    with Progress(len(lines), initial=len(lines) - len(todo), desc="recommend", unit="user",
                  log_every=max(1, len(lines) // 10)) as progress, part.open("ab") as fh:
        for start in range(0, len(todo), step):
            group = todo[start : start + step]
            good = [ln for ln in group if ln.query is not None]
            answers = iter(r.recommend([ln.query for ln in good]))
            text = []
            for ln in group:
                if ln.query is None:
                    rec = {"line": ln.number, "user_id": ln.user_id, "error": str(ln.error)}
                else:
                    rec = {"line": ln.number, **next(answers)}
                    short += len(rec["items"]) < (ln.query.top_k or r.top_k)
                text.append(json.dumps(rec, ensure_ascii=False))
            fh.write(("\n".join(text) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
            progress.update(len(group))
    _finish(part, out)
    if short:
        log.warning("%d users got fewer than top_k items (their history filled the beams; raise --num-beams)", short)
    return {"lines": len(lines), "users": len(lines) - len(bad), "bad": len(bad), "short": short,
            "resumed": len(lines) - len(todo)}


def _finish(part: Path, out: Path) -> None:
    """``part`` without its header line -> ``out``, through a hidden temp file and one rename."""
    import tempfile

    from sidcore.files import TEMP_SUFFIX, publish

    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=TEMP_SUFFIX)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # an ordinary file, like `open(out, "w")` would make (mkstemp: 0600)
    with part.open("rb") as src, os.fdopen(fd, "wb") as dst:
        src.readline()
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    publish(Path(name), out)
    part.unlink()
