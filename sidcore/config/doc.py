"""The "Key reference" section of ``docs/config.md``, generated from the attrs schema and every
installed component's own config class (a test keeps the file in sync).

Regenerate with ``python -m sidcore.config.doc --write docs/config.md`` (replaces the file from
the ``## Key reference`` heading to its end; the prose above it is kept).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import attrs

from sidcore.config import schema
from sidcore.registry import Registry

HEADING = "## Key reference"
KIND_SECTION = {"optimizer": "optimizer", "decoder": "decoder", "metric": "metrics", "store": "store",
                "launcher": "launcher"}


def _default(f: attrs.Attribute) -> str:
    d = f.default
    if isinstance(d, attrs.Factory):  # type: ignore[arg-type]
        d = d.factory() if not d.takes_self else "..."
    if d is attrs.NOTHING:
        return "(required)"
    plain = json.loads(json.dumps(d, default=lambda o: attrs.asdict(o) if attrs.has(type(o)) else str(o)))
    return f"`{json.dumps(plain)}`"


def _help(f: attrs.Attribute) -> str:
    return str(f.metadata.get("help", "")).replace("|", "\\|").replace("\n", " ")


def _rows(cls: type, prefix: str) -> Iterator[str]:
    attrs.resolve_types(cls)
    for f in attrs.fields(cls):
        yield f"| `{prefix}{f.name}` | {_default(f)} | {_help(f)} |"


def render_reference(registry: Registry) -> str:
    """Markdown from ``## Key reference`` on: kernel sections, then one table per component."""
    out = [HEADING, "",
           "Generated from the config schema and each installed component's config class by",
           "`python -m sidcore.config.doc --write docs/config.md`; `tests/unit/test_configs.py` fails when",
           "this section is stale. `sid config show --help-keys` prints the same keys.", "",
           "### Top level", "", "| key | default | meaning |", "|---|---|---|"]
    attrs.resolve_types(schema.RunConfig)
    for f in attrs.fields(schema.RunConfig):
        if f.name not in schema.SECTIONS and f.name not in schema.COMPONENT_SECTIONS and f.name != "metrics":
            out.append(f"| `{f.name}` | {_default(f)} | {_help(f)} |")
    for name, cls in schema.SECTIONS.items():
        out += ["", f"### `{name}`", "", "| key | default | meaning |", "|---|---|---|", *_rows(cls, name + ".")]
    out += ["", "### Components and their options", "",
            "Each table lists the options of one component, written inside its section (`optimizer: {name: "
            "optax_muon, aux_learning_rate: 3.0e-4}`) or as overrides (`optimizer.aux_learning_rate=3e-4`). "
            "Metrics take theirs inside the list item (`metrics: [{name: hr, topk: [1, 10]}]`). Defaults: "
            + ", ".join(f"`{k}: {v}`" for k, v in schema.DEFAULT_COMPONENTS.items())
            + f", `metrics: [{', '.join(schema.DEFAULT_METRICS)}]`.", ""]
    for spec in registry.all():
        if spec.kind in KIND_SECTION:
            out += [f"#### `{KIND_SECTION[spec.kind]}`: `{spec.name}`", ""]
        else:  # kinds outside the run config (e.g. quantizers: options as sid index build KEY=VALUE)
            out += [f"#### {spec.kind} `{spec.name}` (not a run-config section)", ""]
        if spec.summary:
            out += [spec.summary, ""]
        attrs.resolve_types(spec.config)
        fields = attrs.fields(spec.config)
        if fields:
            out += ["| option | default | meaning |", "|---|---|---|"]
            out += [f"| `{f.name}` | {_default(f)} | {_help(f)} |" for f in fields]
        else:
            out.append("No options.")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def splice(doc: str, reference: str) -> str:
    """`doc` with everything from the ``## Key reference`` heading replaced by `reference`."""
    at = doc.find("\n" + HEADING + "\n")
    head = doc if at < 0 else doc[: at + 1]
    return head.rstrip() + "\n\n" + reference


def main(argv: list[str]) -> int:
    from sidcore.plugins import load_plugins

    reference = render_reference(load_plugins().registry)
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(splice(path.read_text(encoding="utf-8"), reference), encoding="utf-8")
        return 0
    if argv:
        print("usage: python -m sidcore.config.doc [--write docs/config.md]", file=sys.stderr)
        return 2
    sys.stdout.write(reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

