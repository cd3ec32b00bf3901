"""The ``sid pipeline`` YAML: one section per stage, each optional, every key checked.

Relative paths: ``work_dir`` and the raw data files resolve against the current directory (as
``sid run``'s ``output_dir`` and ``data.data_dir`` do); a stage's ``config:`` (a ``sid run`` YAML)
resolves against the pipeline YAML's own folder (as a run config's ``base:`` does). A wrong key,
type or value is a one-line `ConfigError` that names the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import yaml

from sidcore.errors import ConfigError

__all__ = ["STAGES", "ConvertSpec", "DataSpec", "EmbedSpec", "IndexSpec", "PipelineSpec", "RunSpec", "load_spec"]

STAGES = ("data", "embed", "index", "convert", "sft", "rl", "eval")
SOURCES = ("amazon18", "amazon23", "interactions")
TINY_LOCAL = "tiny-local"


@attrs.frozen
class DataSpec:
    source: str = "amazon18"
    synthetic: dict[str, int] | None = None  # {reviews: N, seed: S}: generate the raw files
    reviews: str | None = None
    meta: str | None = None
    interactions: str | None = None
    items: str | None = None
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class EmbedSpec:
    model: str = TINY_LOCAL
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class IndexSpec:
    quantizer: str = "rq_kmeans"
    options: dict[str, Any] = attrs.field(factory=dict)
    quantizer_options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ConvertSpec:
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RunSpec:
    config: Path | None = None
    overrides: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class PipelineSpec:
    path: Path
    dataset: str
    work_dir: Path
    category: str
    data: DataSpec | None = None
    embed: EmbedSpec | None = None
    index: IndexSpec | None = None
    convert: ConvertSpec | None = None
    sft: RunSpec | None = None
    rl: RunSpec | None = None
    eval: RunSpec | None = None

    def enabled(self) -> list[str]:
        """The stages the YAML has, in pipeline order."""
        return [name for name in STAGES if getattr(self, name) is not None]


_SECTION_KEYS = {
    "data": ("source", "synthetic", "reviews", "meta", "interactions", "items", "options"),
    "embed": ("model", "options"),
    "index": ("quantizer", "options", "quantizer_options"),
    "convert": ("options",),
    "sft": ("config", "overrides"),
    "rl": ("config", "overrides"),
    "eval": ("config", "overrides"),
}
_RESERVED_OVERRIDES = ("output_dir", "run_mode", "data.data_dir", "data.category", "train.resume_from_checkpoint")
_TOP_KEYS = ("dataset", "work_dir", "category") + STAGES


def _fail(where: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {message}")


def _check_keys(where: str, prefix: str, mapping: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in known:
            raise _fail(where, f"{prefix}{key}", f"unknown key (known: {', '.join(known)})")


def _mapping(where: str, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(where, key, f"expected a mapping of names to values, got {type(value).__name__}")
    return dict(value)


def _text(where: str, key: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, key, f"expected a non-empty string, got {value!r}")
    return value


def _data(where: str, raw: dict[str, Any]) -> DataSpec:
    source = _text(where, "data.source", raw.get("source", "amazon18"))
    if source not in SOURCES:
        raise _fail(where, "data.source", f"expected one of {', '.join(SOURCES)}, got {source!r}")
    synthetic = raw.get("synthetic")
    if synthetic is not None:
        synthetic = _mapping(where, "data.synthetic", synthetic)
        _check_keys(where, "data.synthetic.", synthetic, ("reviews", "seed"))
        for key, default in (("reviews", None), ("seed", 0)):
            value = synthetic.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "reviews" else 0):
                raise _fail(where, f"data.synthetic.{key}", f"expected a {'positive' if key == 'reviews' else 'non-negative'} "
                            f"integer, got {value!r}")
            synthetic[key] = value
        if source == "interactions":
            raise _fail(where, "data.synthetic", "generates Amazon files: use it with source amazon18 or amazon23")
    files = {k: _text(where, f"data.{k}", raw.get(k), optional=True) for k in ("reviews", "meta", "interactions", "items")}
    need = ("interactions", "items") if source == "interactions" else ("reviews", "meta")
    other = [k for k in files if files[k] is not None and k not in need]
    if other:
        raise _fail(where, f"data.{other[0]}", f"not read by source {source} (it reads {' and '.join(need)})")
    if synthetic is not None:
        given = [k for k in need if files[k] is not None]
        if given:
            raise _fail(where, f"data.{given[0]}", "give either data.synthetic or the raw files, not both")
    else:
        missing = [k for k in need if files[k] is None]
        if missing:
            raise _fail(where, f"data.{missing[0]}", f"required by source {source} (or set data.synthetic)")
    return DataSpec(source=source, synthetic=synthetic, options=_mapping(where, "data.options", raw.get("options")),
                    **files)


def _run(where: str, name: str, raw: dict[str, Any], folder: Path) -> RunSpec:
    config = _text(where, f"{name}.config", raw.get("config"), optional=True)
    overrides = _mapping(where, f"{name}.overrides", raw.get("overrides"))
    for key in overrides:
        if key in _RESERVED_OVERRIDES:
            raise _fail(where, f"{name}.overrides.{key}", "is set by the pipeline")
    path = None
    if config is not None:
        path = Path(config) if Path(config).is_absolute() else Path(os.path.normpath(folder / config))
        if not path.is_file():
            raise _fail(where, f"{name}.config", f"no such file {path}")
    elif name != "eval":
        raise _fail(where, f"{name}.config", "required: the sid run config YAML of this stage")
    return RunSpec(config=path, overrides=overrides)


def parse_spec(raw: Any, path: Path, *, work_dir: str | None = None) -> PipelineSpec:
    """Check a parsed pipeline YAML (see the module docstring) and return its spec."""
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of stages at the top level")
    _check_keys(where, "", raw, _TOP_KEYS)
    dataset = _text(where, "dataset", raw.get("dataset"))
    if "/" in dataset or dataset in (".", ".."):
        raise _fail(where, "dataset", f"a file-name prefix, not a path: {dataset!r}")
    category = _text(where, "category", raw.get("category", dataset))
    work = Path(work_dir or _text(where, "work_dir", raw.get("work_dir", "runs/pipeline_example")))
    sections: dict[str, Any] = {}
    for name in STAGES:
        if name not in raw:
            continue
        sec = _mapping(where, name, raw[name] if raw[name] is not None else {})
        _check_keys(where, f"{name}.", sec, _SECTION_KEYS[name])
        if name == "data":
            sections[name] = _data(where, sec)
        elif name == "embed":
            sections[name] = EmbedSpec(model=_text(where, "embed.model", sec.get("model", TINY_LOCAL)),
                                       options=_mapping(where, "embed.options", sec.get("options")))
        elif name == "index":
            sections[name] = IndexSpec(quantizer=_text(where, "index.quantizer", sec.get("quantizer", "rq_kmeans")),
                                       options=_mapping(where, "index.options", sec.get("options")),
                                       quantizer_options=_mapping(where, "index.quantizer_options",
                                                                  sec.get("quantizer_options")))
        elif name == "convert":
            sections[name] = ConvertSpec(options=_mapping(where, "convert.options", sec.get("options")))
        else:
            sections[name] = _run(where, name, sec, path.parent)
    if "eval" in sections and sections["eval"].config is None:
        source = sections.get("sft")
        if source is None:
            raise _fail(where, "eval.config", "required when there is no sft stage to take it from")
        sections["eval"] = attrs.evolve(sections["eval"], config=source.config)
    if not sections:
        raise ConfigError(f"{where}: no stages (give one or more of {', '.join(STAGES)})")
    return PipelineSpec(path=path, dataset=dataset, work_dir=work, category=category, **sections)


def is_pipeline_file(path: str | Path) -> bool:
    """Whether a YAML file is a pipeline (a top-level ``dataset`` key, which no run config has)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "dataset" in raw


def load_spec(path: str | Path, *, work_dir: str | None = None) -> PipelineSpec:
    """Read and check the pipeline YAML at `path` (duplicate keys refused, as in run configs);
    `work_dir` overrides its ``work_dir``."""
    from sidcore.config.loading import read_yaml

    path = Path(path)
    return parse_spec(read_yaml(path), path, work_dir=work_dir)
