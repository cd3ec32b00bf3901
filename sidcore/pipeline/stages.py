"""The seven stages as plans: which files each reads, its own options, what it writes, the ``sid``
commands that do the work (run in-process through sid's own CLI group) and an optional local step.

Layout under the work folder ``W`` (``NAME`` = ``dataset``, ``C`` = ``category``)::

    W/raw/                 synthetic raw files (data.synthetic)
    W/inter/NAME/          the .inter folder               (data: sid data amazon18|amazon23|interactions)
    W/embed/NAME.emb.npy   item embeddings                 (embed: sid index embed; W/embed/tiny-local/)
    W/index/NAME.index.json + NAME.quantizer/              (index: sid index build --inter-dir)
    W/data/                the MiniOneRec split CSVs of C  (convert: sid data convert)
    W/sft/<id>/ W/rl/<id>/ run folders, <id> = the stage fingerprint (sid run resumes inside one)
    W/eval/                the final evaluation            (eval: sid run --run-mode eval)
    W/.pipeline/<stage>.json   stage records
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import click

from sidcore.errors import ConfigError
from sidcore.pipeline.spec import TINY_LOCAL, PipelineSpec

__all__ = ["MissingInput", "StagePlan", "check_options", "command_flags", "plan_stage", "stage_command"]


class MissingInput(Exception):
    """A stage's input file is not there (yet): the stage that writes it has to run first."""

    def __init__(self, stage: str, label: str, path: Path):
        super().__init__(f"{path}")
        self.stage, self.label, self.path = stage, label, path


@attrs.define
class StagePlan:
    name: str
    kind: str  # "files": outputs the pipeline owns; "run": a sid run folder (sid run guards it itself)
    inputs: dict[str, Path]
    options: dict[str, Any]
    outputs: list[Path]
    commands: list[list[str]]
    prepare: Callable[[], None] | None = None
    run_dir: Path | None = None
    digests: dict[str, str | None] = attrs.field(factory=dict)

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"inputs": self.digests, "options": self.options}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


# options each stage sets itself: a YAML `options:` key naming one of these is refused
_RESERVED = {
    "data": {"reviews", "meta", "inter", "items", "dataset", "out", "overwrite"},
    "embed": {"model_dir", "items", "data_dir", "category", "out_path"},
    "index": {"embeddings", "data_dir", "category", "inter_dir", "dataset", "out", "force", "quantizer_name",
              "as_json", "embedding_model"},
    "convert": {"inter_dir", "dataset", "index_path", "out", "category", "overwrite"},
}


_COMMANDS = {"embed": "index embed", "index": "index build", "convert": "data convert"}


def check_options(spec: PipelineSpec, group: click.Group) -> None:
    """Every stage's YAML ``options`` against its command, before any stage runs."""
    for stage, path in (("data", ("data", spec.data.source) if spec.data else None), ("embed", ("index", "embed")),
                        ("index", ("index", "build")), ("convert", ("data", "convert"))):
        section = getattr(spec, stage)
        if section is not None and path is not None:
            command_flags(spec, stage, stage_command(group, path), section.options)
    if spec.sft is not None or spec.rl is not None or spec.eval is not None:
        stage_command(group, ("run",))


def stage_command(group: click.Group, path: tuple[str, ...]) -> click.Command:
    """The click command ``sid <path...>`` of `group` (one-line error when a plugin is missing)."""
    cmd: Any = group
    for part in path:
        sub = cmd.commands.get(part) if isinstance(cmd, click.Group) else None
        if sub is None:
            hint = " (the sid_quantizers plugin provides it: sid plugins list)" if path[:2] == ("index", "build") else ""
            raise ConfigError(f"`sid {' '.join(path)}` is not available{hint}")
        cmd = sub
    return cmd


def command_flags(spec: PipelineSpec, stage: str, cmd: click.Command, options: dict[str, Any]) -> list[str]:
    """``--flag value`` arguments of `cmd` for a stage's YAML ``options`` (keys: option names with
    ``_`` or ``-``); an unknown, reserved or mistyped key is a one-line error naming it."""
    params = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    argv: list[str] = []
    for key, value in options.items():
        name = key.replace("-", "_")
        where = f"{spec.path}: {stage}.options.{key}"
        if name in _RESERVED.get(stage, ()):
            raise ConfigError(f"{where}: is set by the pipeline")
        param = params.get(name)
        if param is None or name in ("help",):
            known = ", ".join(sorted(n for n in params if n not in _RESERVED.get(stage, ()) | {"help"}))
            raise ConfigError(f"{where}: not an option of `sid {_COMMANDS.get(stage, cmd.name)}` (known: {known})")
        flag = max(param.opts, key=len)
        if param.is_flag:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: a switch, expected true or false, got {value!r}")
            argv += [flag] if value else []
        elif value is not None:
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            argv += [flag, str(value)]
    return argv


def _json_arg(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def _digest(stage: str, inputs: dict[str, Path]) -> dict[str, str | None]:
    from sidcore.run.identity import file_digest

    out: dict[str, str | None] = {}
    for label, path in inputs.items():
        if not path.is_file():
            raise MissingInput(stage, label, path)
        out[label] = file_digest(str(path))
    return out


def _inter(spec: PipelineSpec) -> tuple[Path, dict[str, Path]]:
    folder = spec.work_dir / "inter" / spec.dataset
    n = spec.dataset
    files = {s: folder / f"{n}.{s}.inter" for s in ("train", "valid", "test")}
    files["items"] = folder / f"{n}.item.json"
    return folder, files


def _embeddings(spec: PipelineSpec) -> Path:
    return spec.work_dir / "embed" / f"{spec.dataset}.emb.npy"


def _index(spec: PipelineSpec) -> Path:
    return spec.work_dir / "index" / f"{spec.dataset}.index.json"


def _data_files(spec: PipelineSpec) -> dict[str, Path]:
    from sidcore.data.minionerec import split_paths

    return dict(split_paths(spec.work_dir / "data", spec.category))


def _model_options(model: str) -> dict[str, Any]:
    """What names the embedder: tiny-local's fixed recipe, a folder's config and file sizes, a hub id."""
    from sidcore.pipeline.local import TINY_EMBEDDER

    if model == TINY_LOCAL:
        return {"tiny_local": TINY_EMBEDDER}
    folder = Path(model)
    if folder.is_dir():
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
        config = folder / "config.json"
        return {"model_files": files, "model_config": config.read_text() if config.is_file() else None}
    return {"hub_id": model}


def _plan_data(spec: PipelineSpec, group: click.Group) -> StagePlan:
    from sidcore.pipeline.local import raw_paths, write_synthetic

    d = spec.data
    assert d is not None
    cmd = stage_command(group, ("data", d.source))
    flags = command_flags(spec, "data", cmd, d.options)
    raw_dir = spec.work_dir / "raw"
    folder, inter = _inter(spec)
    outputs = list(inter.values())
    inputs: dict[str, Path] = {}
    prepare = None
    if d.synthetic is not None:
        reviews, meta = raw_paths(raw_dir, spec.dataset, d.source)
        outputs = [reviews, meta] + outputs
        synth = d.synthetic

        def prepare() -> None:
            write_synthetic(raw_dir, spec.dataset, d.source, reviews=synth["reviews"], seed=synth["seed"])
        files = ["--reviews", str(reviews), "--meta", str(meta)]
    elif d.source == "interactions":
        inputs = {"interactions": Path(d.interactions or ""), "items": Path(d.items or "")}
        files = ["--interactions", d.interactions or "", "--items", d.items or ""]
    else:
        inputs = {"reviews": Path(d.reviews or ""), "meta": Path(d.meta or "")}
        files = ["--reviews", d.reviews or "", "--meta", d.meta or ""]
    argv = ["data", d.source, *files, "--dataset", spec.dataset, "--out", str(folder.parent), "--overwrite", *flags]
    options = {"source": d.source, "synthetic": d.synthetic, "dataset": spec.dataset, "flags": flags}
    return StagePlan("data", "files", inputs, options, outputs, [argv], prepare, digests=_digest("data", inputs))


def _plan_embed(spec: PipelineSpec, group: click.Group) -> StagePlan:
    from sidcore.pipeline.local import write_tiny_embedder

    e = spec.embed
    assert e is not None
    flags = command_flags(spec, "embed", stage_command(group, ("index", "embed")), e.options)
    inputs = {"items": _inter(spec)[1]["items"]}
    out = _embeddings(spec)
    model, prepare, outputs = e.model, None, [out]
    if e.model == TINY_LOCAL:
        tiny = spec.work_dir / "embed" / TINY_LOCAL
        model = str(tiny)
        outputs = [tiny / "config.json", tiny / "model.safetensors", out]

        def prepare() -> None:
            write_tiny_embedder(tiny)
    argv = ["index", "embed", "--model", model, "--items", str(inputs["items"]), "--out", str(out), *flags]
    options = {"model": e.model, **_model_options(e.model), "flags": flags}
    return StagePlan("embed", "files", inputs, options, outputs, [argv], prepare, digests=_digest("embed", inputs))


def _plan_index(spec: PipelineSpec, group: click.Group) -> StagePlan:
    x = spec.index
    assert x is not None
    flags = command_flags(spec, "index", stage_command(group, ("index", "build")), x.options)
    folder, inter = _inter(spec)
    inputs = {"embeddings": _embeddings(spec), "items": inter["items"]}
    model = spec.embed.model if spec.embed is not None else ""
    qopts = [_json_arg(k, v) for k, v in x.quantizer_options.items()]
    argv = ["index", "build", "--embeddings", str(inputs["embeddings"]), "--inter-dir", str(folder),
            "--dataset", spec.dataset, "--out", str(_index(spec).parent), "--force", "--quantizer", x.quantizer,
            "--embedding-model", model, *flags, *qopts]
    options = {"quantizer": x.quantizer, "flags": flags, "quantizer_options": qopts, "embedding_model": model}
    return StagePlan("index", "files", inputs, options, [_index(spec)], [argv], digests=_digest("index", inputs))


def _plan_convert(spec: PipelineSpec, group: click.Group) -> StagePlan:
    c = spec.convert
    assert c is not None
    flags = command_flags(spec, "convert", stage_command(group, ("data", "convert")), c.options)
    folder, inter = _inter(spec)
    inputs = {**inter, "index": _index(spec)}
    outputs = [p for k, p in _data_files(spec).items()]
    argv = ["data", "convert", "--inter-dir", str(folder), "--dataset", spec.dataset, "--index", str(_index(spec)),
            "--out", str(spec.work_dir / "data"), "--category", spec.category, "--overwrite", *flags]
    options = {"category": spec.category, "flags": flags}
    return StagePlan("convert", "files", inputs, options, outputs, [argv], digests=_digest("convert", inputs))


def _resolved_config(path: Path, overrides: list[str], registry: Any) -> str:
    from sidcore.config import loading

    cfg = loading.load_config(str(path), registry, overrides=overrides)
    return loading.dump_yaml(cfg)


def _plan_run(spec: PipelineSpec, name: str, registry: Any, start: Path | None) -> StagePlan:
    r = getattr(spec, name)
    assert r is not None and r.config is not None
    files = _data_files(spec)
    inputs = {k: files[k] for k in ("train", "valid", "test", "info", "index", "items")}
    digests = _digest(name, inputs)
    mode = {"sft": "train", "rl": "rl", "eval": "eval"}[name]
    fixed = [f"data.data_dir={spec.work_dir / 'data'}", f"data.category={spec.category}"]
    if start is not None:
        fixed.append(f"train.resume_from_checkpoint={start}#last")
    extra = fixed + [_json_arg(k, v) for k, v in r.overrides.items()]
    resolved = _resolved_config(r.config, [*extra, f"run_mode={mode}", "output_dir=<pipeline>"], registry)
    options = {"run_mode": mode, "config": resolved}
    plan = StagePlan(name, "run", inputs, options, [], [], digests=digests)
    run_dir = spec.work_dir / "eval" if name == "eval" else spec.work_dir / name / plan.fingerprint[:12]
    plan.run_dir = run_dir
    plan.outputs = [run_dir / "run_summary.json"]
    plan.commands = [["run", "--config", str(r.config), "--run-mode", mode, "--output-dir", str(run_dir), *extra]]
    return plan


def plan_stage(spec: PipelineSpec, name: str, group: click.Group, registry: Any,
               run_dirs: dict[str, Path]) -> StagePlan:
    """The plan of stage `name` (raises `MissingInput` while an earlier stage's outputs are absent).

    `run_dirs` holds the run folders of the sft / rl plans made so far: rl starts from sft's last
    checkpoint, eval from rl's (else sft's)."""
    if name == "data":
        return _plan_data(spec, group)
    if name == "embed":
        return _plan_embed(spec, group)
    if name == "index":
        return _plan_index(spec, group)
    if name == "convert":
        return _plan_convert(spec, group)
    stage_command(group, ("run",))
    if name == "sft":
        return _plan_run(spec, name, registry, None)
    if name == "rl":
        if spec.sft is None:
            raise ConfigError(f"{spec.path}: rl: starts from the sft stage's checkpoint; add an sft stage")
        return _plan_run(spec, name, registry, _start(run_dirs, name, "sft"))
    if spec.sft is None and spec.rl is None:
        raise ConfigError(f"{spec.path}: eval: evaluates the sft or rl stage's checkpoint; add one of them")
    return _plan_run(spec, name, registry, _start(run_dirs, name, "rl" if spec.rl is not None else "sft"))


def _start(run_dirs: dict[str, Path], stage: str, source: str) -> Path:
    if source not in run_dirs:  # that stage could not be planned yet (its own inputs are missing)
        raise MissingInput(stage, f"{source} checkpoint", Path(f"<{source} run folder>"))
    return run_dirs[source]
