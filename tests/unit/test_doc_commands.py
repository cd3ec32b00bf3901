"""Every ``sid ...`` command in README.md, configs/README.md and docs/**/*.md runs as written.

Commands are read from fenced code blocks (continuations joined, ``export``/``for`` expanded like
the SOP parser, ``a && b`` chains split, ``.venv/bin/`` dropped). Then, with the fake ``gcloud``
first on PATH (it must record no call):

- ``sid plugins ...``, ``sid config ...`` and every command written with ``--dry-run`` run as written;
- ``sid run`` without ``--dry-run`` runs with it added (the config, flags and overrides resolve; the
  plan is printed; nothing trains);
- the rest (``sid calc``, ``export``, ``report``, ``tpu`` commands without ``--dry-run``) need a run
  directory or a VM: the command must exist and the repository files it names must exist.

The SOPs' own ``--dry-run`` pass is in test_sops.py; here they are included too, as written.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from test_sops import ROOT, command_path, fake_gcloud, help_text, sid, sop_commands  # noqa: F401

DOCS = [ROOT / "README.md", ROOT / "configs" / "README.md",
        *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name not in ("cli.md", "architecture.md"))]
# cli.md is --help output; architecture.md's `sid run --config C ...` is a call-tree diagram
RUNS_AS_WRITTEN = {("plugins", "list"), ("config", "show"), ("config", "validate"), ("stub-path",)}
REPO_PATH = re.compile(r"(?<![\w/])((?:configs|sidcore|docs|tests|bench)/[\w./-]+\.(?:yaml|txt|json|md|py))")


def _chain_parts(line: str) -> list[str]:
    """``a && .venv/bin/sid b`` -> [``a``, ``sid b``]; an ``&&`` inside quotes stays put."""
    line = re.sub(r"(^|\s)\.venv/bin/sid ", r"\1sid ", line.strip())
    if line.startswith("sid ") or "&&" not in line:
        return [line]
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return [line]
    parts, cur = [], []
    for tok in [*tokens, "&&"]:
        if tok == "&&":
            parts.append(shlex.join(cur))
            cur = []
        else:
            cur.append(tok)
    return parts


def doc_commands(text: str) -> list[str]:
    """The ``sid`` command lines of every fenced block of a markdown text."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", text, flags=re.S | re.M)
    joined = [re.sub(r"\s*\\\n\s*", " ", b) for b in blocks]
    as_bash = "".join("```bash\n" + "\n".join(p for ln in b.splitlines() for p in _chain_parts(ln)) + "\n```\n"
                      for b in joined)
    return [re.sub(r"\s+#\s.*$", "", c) for c in sop_commands(as_bash)]


def all_commands() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in doc_commands(p.read_text())]


def test_the_extractor_finds_the_readme_commands():
    found = [c for f, c in all_commands() if f == "README.md"]
    assert "sid run --config configs/default.yaml" in found  # from `python3 -m venv ... && .venv/bin/sid run`
    assert any(c.startswith("sid tpu") or "tpu_name=" in c for c in found)
    assert len(found) >= 10


@pytest.mark.parametrize("where,line", all_commands(), ids=lambda v: v if "/" not in v or " " in v else v)
def test_doc_command_runs_as_written(where, line, fake_gcloud):  # noqa: F811 (the imported fixture)
    argv = shlex.split(line)[1:]
    path = command_path(argv)
    help_text(path)  # the command exists
    for rel in REPO_PATH.findall(line):
        assert (ROOT / rel).exists(), f"{where}: {line}: {rel} does not exist"
    if path in RUNS_AS_WRITTEN or "--dry-run" in argv:
        run = argv
    elif path == ("run",):
        run = [*argv, "--dry-run"]
    else:
        return
    if path == ("checkpoint", "copy") and any(a.startswith("runs/") for a in argv):
        return  # needs the run directory the main job writes
    res = sid(run)
    needs_earlier = [a.split("=", 1)[1].split("#")[0] for a in argv if "=runs/" in a]
    if res.exit_code != 0 and needs_earlier and not (ROOT / needs_earlier[0]).exists():
        # a dry run checks the start checkpoint exists; an earlier command of the doc writes it
        assert f"{needs_earlier[0]}: no such file or directory" in str(res.exception), res.exception
        return
    missing = re.match(r"data\.\w+: ([^:]+): no such file", str(res.exception))
    if res.exit_code != 0 and missing and not (ROOT / Path(missing.group(1)).parts[0]).exists():
        return  # data the doc downloads or builds in an earlier step (git clone, sid index build): not here
    assert res.exit_code == 0, f"{where}: sid {shlex.join(run)}\n{res.output[-2000:]}\n{res.exception!r}"
    log = Path(fake_gcloud["FAKE_GCLOUD_LOG"])
    assert not log.exists() or log.read_text() == "", f"{where}: {line} called gcloud"
