"""All-or-nothing output of the data commands, and ``json.dump(..., indent=2)``'s exact bytes, fast.

`Outputs` collects every file of a command as a hidden temporary file beside its final name and
publishes them together at the end (``os.replace`` each), so an error or a kill leaves no
half-written output. It refuses, before any work, when a target file exists and is non-empty,
unless ``overwrite``.

The JSON files upstream writes with ``json.dump(obj, f, indent=2)`` are large (review.json holds one
entry per review), and ``indent`` makes Python's json use its pure-Python encoder. `indented_lists`
and `indented_records` build the same bytes from polars string columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import attrs
import polars as pl

from sidcore.errors import DataError, SidError
from sidcore.files import publish, unlink_quietly, write_temp


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()  # what open(path, "w") gives (temporary files are created 0600)


class Outputs:
    """Stage files; `commit` publishes them all, `discard` removes the staged ones."""

    def __init__(self, targets: Iterable[Path], *, overwrite: bool) -> None:
        self.targets = [Path(t) for t in targets]
        self._staged: dict[Path, Path] = {}
        self._remove_unwritten = False
        if not overwrite:
            for path in self.targets:
                if path.is_file() and path.stat().st_size > 0:
                    raise SidError(f"{path}: exists and is not empty (pass --overwrite to replace it)")
                if path.is_dir():
                    raise SidError(f"{path}: is a directory")

    def write(self, path: Path, data: Content) -> None:
        """Stage `data` (bytes, text, or a list of bytes / `Joined` parts streamed in order)."""
        path = Path(path)
        if path not in self.targets:
            raise AssertionError(f"{path} was not declared")
        if not isinstance(data, list):
            raw = data.encode("utf-8") if isinstance(data, str) else data
            self._staged[path] = write_temp(path, raw, fsync=False, error=DataError)
            os.chmod(self._staged[path], _FILE_MODE)
            return
        self._staged[path] = tmp = write_temp(path, b"", fsync=False, error=DataError)
        os.chmod(tmp, _FILE_MODE)
        try:
            with open(tmp, "wb") as fh:
                _write_parts(fh, data)
        except OSError as exc:
            raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None

    def remove_unwritten(self) -> None:
        """At commit, also delete declared targets that nothing was written to (stale outputs)."""
        self._remove_unwritten = True

    def commit(self) -> None:
        for path, tmp in self._staged.items():
            publish(tmp, path, fsync=False, error=DataError)
        if self._remove_unwritten:
            for path in self.targets:
                if path not in self._staged and path.is_file():
                    unlink_quietly(path)
        self._staged.clear()

    def discard(self) -> None:
        for tmp in self._staged.values():
            unlink_quietly(tmp)
        self._staged.clear()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@attrs.frozen
class Joined:
    """A column's strings joined by `sep`, written by polars straight into the output file."""

    col: pl.Series
    sep: str


@attrs.frozen
class Chunks:
    """Lines built chunk by chunk while writing (`make(i)` -> a String Series), each followed by
    `sep`: big outputs never exist whole in memory."""

    count: int
    make: object  # Callable[[int], pl.Series]
    sep: str = "\n"


Content = bytes | str | list  # a list holds bytes and Joined parts, written in order


def _write_parts(fh, parts: list) -> None:
    for part in parts:
        if isinstance(part, bytes):
            fh.write(part)
            continue
        if isinstance(part, Chunks):
            for i in range(part.count):
                col = part.make(i)
                if len(col):
                    pl.DataFrame({"x": col}).write_csv(fh, include_header=False, quote_style="never",
                                                       line_terminator=part.sep)
            continue
        n = len(part.col)
        if n > 1:
            pl.DataFrame({"x": part.col.head(n - 1)}).write_csv(
                fh, include_header=False, quote_style="never", line_terminator=part.sep)
        if n:
            fh.write(part.col[n - 1].encode("utf-8"))  # no separator after the last one


def lines_text(lines: pl.Series | list[str], header: str | None = None) -> list:
    """Lines each ending with ``\\n``, optional header first."""
    col = lines if isinstance(lines, pl.Series) else pl.Series(lines, dtype=pl.String)
    head = (header + "\n").encode() if header is not None else b""
    return [head, Joined(col, "\n"), b"\n" if len(col) else b""]


def indented_lists(keys: pl.Series, groups: pl.Series) -> list:
    """``json.dump({key: [ints...]}, indent=2)`` where `keys` are JSON-encoded key strings and
    `groups` hold each list's items already rendered (one string per list: items joined by
    ``",\\n    "``)."""
    if len(keys) == 0:
        return [b"{}"]
    entries = pl.DataFrame({"k": keys, "g": groups}).select(
        pl.concat_str([pl.lit("  "), pl.col("k"), pl.lit(": [\n    "), pl.col("g"), pl.lit("\n  ]")])
    ).to_series()
    return [b"{\n", Joined(entries, ",\n"), b"\n}"]


def indented_records(keys: pl.Series, fields: dict[str, pl.Series]) -> list:
    """``json.dump({key: {field: value, ...}}, indent=2)``: `keys` JSON-encoded, each field's column
    holds already JSON-encoded values."""
    if len(keys) == 0:
        return [b"{}"]
    pieces: list[pl.Expr] = [pl.lit("  "), pl.col("__k"), pl.lit(": {")]
    for n, name in enumerate(fields):
        sep = "\n    " if n == 0 else ",\n    "
        pieces += [pl.lit(sep + json.dumps(name) + ": "), pl.col(f"__f{n}")]
    pieces.append(pl.lit("\n  }" if fields else "}"))
    frame = pl.DataFrame({"__k": keys, **{f"__f{n}": col for n, col in enumerate(fields.values())}})
    entries = frame.select(pl.concat_str(pieces)).to_series()
    return [b"{\n", Joined(entries, ",\n"), b"\n}"]


def dump_indented(obj: object) -> str:
    """``json.dump(obj, f, indent=2)``'s text (for the small files)."""
    return json.dumps(obj, indent=2)


def tsv_pairs(left: pl.Series, right: pl.Series) -> list:
    """``f"{left}\\t{right}\\n"`` per row."""
    frame = pl.DataFrame({"a": left, "b": right.cast(pl.String)})
    return lines_text(frame.select(pl.concat_str(["a", "b"], separator="\t")).to_series())


def file_nonempty(path: Path) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False
