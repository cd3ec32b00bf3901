"""Tokenizer loading (bundled Qwen2.5 base or any HF tokenizer) and the SID vocabulary extension.

The Qwen2.5 base tokenizer ships inside the package as ``assets/tokenizers/qwen2.5-base/
tokenizer.json.xz``; `bundled_tokenizer_dir` decompresses it once, atomically, into a user cache
folder (``$SID_CACHE_DIR``, ``$XDG_CACHE_HOME/sid/`` or ``~/.cache/sid/``) keyed by the archive's
hash. `add_sid_tokens` adds the SID level tokens of an index.json as regular (non-special) tokens in sorted-string order,
which reproduces the token ids of the official MiniOneRec checkpoints (Qwen2.5: ids start at
151665). transformers is imported lazily, so importing this module is cheap; a local Qwen2 tokenizer
folder is loaded through its own class, not ``AutoTokenizer``, which would import torch.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import lzma
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sidcore.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

BUNDLED = "bundled"
_ASSET = Path(__file__).resolve().parent.parent / "assets" / "tokenizers" / "qwen2.5-base"
_XZ_NAME = "tokenizer.json.xz"
_PLAIN_FILES = ("tokenizer_config.json", "README.md")


def cache_root() -> Path:
    """``$SID_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/sid``, else ``~/.cache/sid``."""
    env = os.environ.get("SID_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sid"


@functools.cache
def _asset_digest(xz_path: Path) -> str:
    return hashlib.sha256(xz_path.read_bytes()).hexdigest()[:16]


def bundled_tokenizer_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a folder holding the bundled Qwen2.5 base ``tokenizer.json`` + ``tokenizer_config.json``.

    The first call decompresses the xz archive into ``<cache>/tokenizers/qwen2.5-base-<hash>/`` via a
    temporary folder renamed into place, so concurrent processes never see a half-written folder.

    Args:
        cache_dir: cache root; default `cache_root()`.
    """
    src = _ASSET / _XZ_NAME
    if not src.is_file():
        raise DataError(f"{src}: bundled tokenizer missing from the installation (reinstall sid)")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    final = root / "tokenizers" / f"qwen2.5-base-{_asset_digest(src)}"
    if (final / "tokenizer.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-qwen2.5-base-", dir=final.parent))
    try:
        with lzma.open(src, "rb") as fin, open(tmp / "tokenizer.json", "wb") as fout:
            shutil.copyfileobj(fin, fout, length=1 << 20)
        for name in _PLAIN_FILES:
            if (_ASSET / name).is_file():
                shutil.copyfile(_ASSET / name, tmp / name)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: its folder is complete
            if not (final / "tokenizer.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("decompressed bundled tokenizer into %s", final)
    return final


def load_tokenizer(spec: str | None, *, padding_side: str = "right") -> PreTrainedTokenizerBase:
    """Load a tokenizer.

    Args:
        spec: ``"bundled"`` (or None / ``""``) for the bundled Qwen2.5 base tokenizer; otherwise a local
            folder or a hub id for ``transformers.AutoTokenizer.from_pretrained``.
        padding_side: ``"left"`` or ``"right"``, always set explicitly.

    Returns:
        The tokenizer, with ``pad_token`` = its own pad token if it has one, else its EOS token.

    Raises:
        DataError: the tokenizer cannot be loaded, or has neither a pad nor an EOS token.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    source = str(bundled_tokenizer_dir()) if spec in (None, "", BUNDLED) else spec
    if Path(source).is_dir():
        check_tokenizer_folder(Path(source))
    try:
        tok = _tokenizer_class(source).from_pretrained(source, padding_side=padding_side)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"tokenizer {spec!r}: cannot load ({first})") from None
    tok.padding_side = padding_side
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise DataError(f"tokenizer {spec!r}: has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    check_encodes_prompts(tok, spec)
    return tok


#: File sets of which a tokenizer folder must hold one (fast tokenizer; byte-level BPE; SentencePiece).
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",))


def check_tokenizer_folder(folder: Path) -> None:
    """A local tokenizer folder holds tokenizer files, and its ``config.json`` (when present) is JSON.

    transformers builds an *empty* tokenizer (one token, every word dropped) from a model folder that
    has a ``config.json`` but no tokenizer files, and blames a broken ``config.json`` on the tokenizer.

    Raises:
        DataError: naming the folder and the missing files, or the ``config.json`` and its line.
    """
    import json

    config = folder / "config.json"
    if config.is_file():
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{config}:{exc.lineno}: invalid JSON ({exc.msg}); the model config is broken") from None
        except UnicodeDecodeError:
            raise DataError(f"{config}: not UTF-8 text; the model config is broken") from None
    if not any(all((folder / name).is_file() for name in names) for names in TOKENIZER_FILES):
        wanted = " or ".join(" + ".join(names) for names in TOKENIZER_FILES)
        raise DataError(f"{folder}: no tokenizer files (missing {wanted}); point data.tokenizer at the folder "
                        "that has them, or data.tokenizer=bundled for the Qwen2.5 tokenizer")


def check_encodes_prompts(tok: Any, spec: str | None) -> None:
    """The tokenizer encodes the prompt template's text and decodes it back (whitespace aside).

    Raises:
        DataError: it drops or replaces words (an empty vocabulary, unknown-token ids).
    """
    from sidcore.data.prompts import HEADER, SID_NEXT_ITEM_INSTRUCTION

    text = HEADER + SID_NEXT_ITEM_INSTRUCTION
    ids = tok.encode(text, add_special_tokens=False)
    back = tok.decode(ids, skip_special_tokens=True) if ids else ""
    if "".join(back.split()) != "".join(text.split()):
        raise DataError(f"tokenizer {spec!r}: cannot encode the prompt template ({len(tok)} token(s) in its "
                        f"vocabulary; {text[:40]!r} decodes back as {back[:40]!r}); use the model's own "
                        "tokenizer folder or data.tokenizer=bundled")


#: ``tokenizer_class`` values of a folder's tokenizer_config.json loaded through their own module:
#: ``transformers.AutoTokenizer`` imports the model-config machinery and with it torch (seconds of
#: start-up per `sid run`); the class it would resolve to is the same.
_DIRECT_CLASSES = {"Qwen2Tokenizer": "qwen2", "Qwen2TokenizerFast": "qwen2"}


def _tokenizer_class(source: str) -> Any:
    """The class to load `source` with: Qwen2's own for a local Qwen2 folder, else ``AutoTokenizer``."""
    import importlib
    import json

    config = Path(source) / "tokenizer_config.json"
    name = None
    if config.is_file() and (Path(source) / "tokenizer.json").is_file():
        try:
            name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
        except (OSError, ValueError, AttributeError):
            name = None
    if name in _DIRECT_CLASSES:
        module = _DIRECT_CLASSES[name]
        try:
            return getattr(importlib.import_module(f"transformers.models.{module}.tokenization_{module}"),
                           "Qwen2Tokenizer")
        except (ImportError, AttributeError):  # another transformers layout: let it resolve the class
            pass
    from transformers import AutoTokenizer

    return AutoTokenizer


@attrs.frozen(kw_only=True)
class TokenExtension:
    """What `add_sid_tokens` did.

    Attributes:
        original_vocab_size: ``len(tokenizer)`` before.
        added_tokens: the tokens actually added, in id order (sorted as strings).
        new_vocab_size: ``len(tokenizer)`` after.
    """

    original_vocab_size: int
    added_tokens: tuple[str, ...]
    new_vocab_size: int


def sid_vocabulary(index: Mapping[str, Sequence[str]]) -> list[str]:
    """All level tokens of an index.json, deduplicated, sorted as strings (``<a_0>, <a_1>, <a_10>, ...``)."""
    return sorted({tok for tokens in index.values() for tok in tokens})


def add_sid_tokens(tokenizer: Any, index: Mapping[str, Sequence[str]]) -> TokenExtension:
    """Add the SID level tokens of ``index`` that the tokenizer lacks, as regular added tokens.

    Tokens already in the vocabulary (e.g. an official MiniOneRec checkpoint's tokenizer) are left
    alone, so calling this twice adds nothing the second time.
    """
    before = len(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [t for t in sid_vocabulary(index) if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    after = len(tokenizer)
    if after != before + len(missing):
        raise DataError(
            f"tokenizer: adding {len(missing)} SID tokens grew the vocabulary by {after - before}"
        )
    log.info("SID tokens: %d added (vocab %d -> %d)", len(missing), before, after)
    return TokenExtension(original_vocab_size=before, added_tokens=tuple(missing), new_vocab_size=after)


def sid_token_ids(tokenizer: Any, tokens: Iterable[str], *, source: str = "tokenizer") -> dict[str, int]:
    """Map SID level tokens to their single token id.

    Raises:
        DataError: ``tokenizer lacks SID tokens`` when a token does not encode to exactly one id
            (call `add_sid_tokens` first, or use the checkpoint's own tokenizer).
    """
    vocab = tokenizer.get_vocab()
    out: dict[str, int] = {}
    for tok in tokens:
        if tok in out:
            continue
        tid = vocab.get(tok)
        if tid is None or tokenizer.encode(tok, add_special_tokens=False) != [tid]:
            raise DataError(
                f"{source}: tokenizer lacks SID tokens (e.g. {tok} is not a single token); add them with "
                "add_sid_tokens(tokenizer, index)"
            )
        out[tok] = tid
    return out


def suffix_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids a completed SID is followed by: ids of ``"a\\n"`` minus their common prefix with ids of ``"a"``."""
    with_nl = tokenizer.encode("a\n", add_special_tokens=False)
    plain = tokenizer.encode("a", add_special_tokens=False)
    common = 0
    while common < min(len(with_nl), len(plain)) and with_nl[common] == plain[common]:
        common += 1
    return tuple(with_nl[common:])
