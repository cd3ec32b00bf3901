"""`sid pipeline`: the bundled example end to end through the CLI, stage records that skip, re-run and
refuse, one-line errors for bad YAML, and a dry run that writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidcore.errors import ConfigError
from sidcore.pipeline.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "pipeline" / "example.yaml"
STAGES = ("data", "embed", "index", "convert", "sft", "rl", "eval")


def sid(*args, cwd=ROOT, env=None):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], check=False, capture_output=True, text=True,
                          env=env, timeout=900, cwd=cwd)


def example(tmp_path: Path, name: str = "p.yaml", until: str | None = None, **changes) -> Path:
    """The bundled example with absolute config paths (cut after `until`), `changes` = {"stage.key": value}."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    for stage in ("sft", "rl", "eval"):
        if raw.get(stage, {}).get("config"):
            raw[stage]["config"] = str((EXAMPLE.parent / raw[stage]["config"]).resolve())
    if until is not None:
        for stage in STAGES[STAGES.index(until) + 1:]:
            raw.pop(stage, None)
    for dotted, value in changes.items():
        node = raw
        *head, last = dotted.split("/")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def actions(stdout: str) -> dict[str, str]:
    """{stage: run|skip|pending|off} from the ``[pipeline] <action> <stage>: ...`` lines."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("[pipeline] ") and ":" in line:
            words = line.split(":")[0].split()
            if len(words) == 3 and words[2] in STAGES:
                out[words[2]] = words[1]
    return out


def one_error_line(res) -> str:
    assert res.returncode != 0, res.stdout[-2000:]
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith(("[sid] ", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return lines[0]


# ----------------------------------------------------------------------------- the YAML
@pytest.mark.parametrize("text, needle", [
    ("dataset: X\nembd: {}\n", ": embd: unknown key (known: dataset, work_dir, category, data, embed"),
    ("dataset: X\nembed: {modle: x}\n", ": embed.modle: unknown key (known: model, options)"),
    ("embed: {}\n", ": dataset: expected a non-empty string"),
    ("dataset: X\ndata: {source: amazon19}\n", ": data.source: expected one of amazon18, amazon23, interactions"),
    ("dataset: X\ndata: {synthetic: {reviews: 0}}\n", ": data.synthetic.reviews: expected a positive integer"),
    ("dataset: X\ndata: {reviews: r.json}\n", ": data.meta: required by source amazon18"),
    ("dataset: X\nsft: {overrides: {train.max_steps: 1}}\n", ": sft.config: required"),
    ("dataset: X\nsft: {config: nothere.yaml}\n", ": sft.config: no such file"),
    ("dataset: X\nconvert: {options: [1]}\n", ": convert.options: expected a mapping"),
    ("dataset: X\nembed: {model: [\n", ".yaml:3: invalid YAML: expected the node content"),
    ("dataset: X\ndataset: Y\n", "duplicate"),
])
def test_bad_yaml_is_a_one_line_config_error(tmp_path, text, needle):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(path))


def test_eval_takes_the_sft_config_and_paths_resolve_against_the_yaml():
    spec = load_spec(EXAMPLE)
    assert spec.enabled() == list(STAGES)
    assert spec.eval.config == spec.sft.config == ROOT / "configs" / "smoke" / "tiny.yaml"
    assert spec.work_dir == Path("runs/pipeline_example") and spec.category == spec.dataset == "Synthetic"


def test_config_validate_checks_a_pipeline_yaml_as_one(tmp_path):
    ok = sid("config", "validate", str(EXAMPLE))
    assert ok.returncode == 0 and ok.stdout.strip() == f"ok  {EXAMPLE}  (sid pipeline)", ok.stderr
    bad = example(tmp_path, **{"convert/options/keep_longest": True})
    assert "convert.options.keep_longest: not an option of `sid data convert`" in one_error_line(
        sid("config", "validate", str(bad)))


def test_bad_keys_through_the_cli_are_one_line_and_write_nothing(tmp_path):
    work = tmp_path / "work"
    bad = example(tmp_path, **{"index/options/sede": 1})
    line = one_error_line(sid("pipeline", "--config", str(bad), "--work-dir", str(work)))
    assert "index.options.sede: not an option of `sid index build` (known: code_offset, dedup, seed" in line
    reserved = example(tmp_path, **{"sft/overrides/output_dir": "x"})
    assert "sft.overrides.output_dir: is set by the pipeline" in one_error_line(
        sid("pipeline", "--config", str(reserved), "--work-dir", str(work)))
    typo = example(tmp_path, embedd={})
    assert ": embedd: unknown key" in one_error_line(sid("pipeline", "--config", str(typo), "--work-dir", str(work)))
    raw = tmp_path / "raw.yaml"
    raw.write_text("dataset: X\ndata: {reviews: nope.json, meta: nope2.json}\n")
    assert "raw.yaml: data.reviews: no such file nope.json" in one_error_line(
        sid("pipeline", "--config", str(raw), "--work-dir", str(work)))
    line = one_error_line(sid("pipeline", "--config", str(example(tmp_path)), "--work-dir", str(work), "--from", "embed"))
    assert "stage embed: input items" in line and "(it is before --from)" in line
    assert not work.exists()


def test_dry_run_lists_the_stages_and_creates_nothing(tmp_path):
    work = tmp_path / "work"
    res = sid("pipeline", "--config", str(example(tmp_path)), "--work-dir", str(work), "--dry-run")
    assert res.returncode == 0, res.stderr[-2000:]
    assert actions(res.stdout) == {"data": "run", **{s: "pending" for s in STAGES[1:]}}
    assert f"sid data amazon18 --reviews {work}/raw/Synthetic.json" in res.stdout
    assert not work.exists()


# ----------------------------------------------------------------------------- records, without training
def test_records_skip_rerun_after_a_change_refuse_foreign_outputs_and_resume(tmp_path):
    work = tmp_path / "work"
    p = example(tmp_path, until="convert")
    first = sid("pipeline", "--config", str(p), "--work-dir", str(work))
    assert first.returncode == 0, first.stderr[-3000:]
    assert actions(first.stdout) == {s: "run" for s in STAGES[:4]}
    csv = work / "data" / "train" / "Synthetic_5_2016-10-2018-11.csv"
    assert csv.is_file() and (work / "index" / "Synthetic.index.json").is_file()
    rec = json.loads((work / ".pipeline" / "index.json").read_text())
    assert rec["state"] == "done" and rec["inputs"]["embeddings"]["sha256"].startswith("sha256:")

    again = sid("pipeline", "--config", str(p), "--work-dir", str(work))
    assert actions(again.stdout) == {s: "skip" for s in STAGES[:4]}
    for s in STAGES[:4]:
        assert f"skip {s}: record {work}/.pipeline/{s}.json matches" in again.stdout

    # one option of `index` changed: index and the stages after it run, the ones before do not
    changed = example(tmp_path, "q.yaml", until="convert", **{"index/quantizer_options/codebook_sizes": [4, 4, 4]})
    res = sid("pipeline", "--config", str(changed), "--work-dir", str(work))
    assert res.returncode == 0, res.stderr[-3000:]
    assert actions(res.stdout) == {"data": "skip", "embed": "skip", "index": "run", "convert": "run"}
    assert "run index: changed since" in res.stdout and "option quantizer_options" in res.stdout
    codes = {tok for sid_ in json.loads((work / "index" / "Synthetic.index.json").read_text()).values()
             for tok in sid_[:3]}
    assert all(int(tok.split("_")[1].rstrip(">")) < 4 for tok in codes)

    # outputs without a record: not this pipeline's, refused with the remedy; --force-stage replaces them
    (work / ".pipeline" / "convert.json").unlink()
    line = one_error_line(sid("pipeline", "--config", str(changed), "--work-dir", str(work)))
    assert "stage convert:" in line and "--force-stage convert" in line
    forced = sid("pipeline", "--config", str(changed), "--work-dir", str(work), "--force-stage", "convert")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert actions(forced.stdout)["convert"] == "run"

    # a stage interrupted half way (record still 'running') runs again
    rec_path = work / ".pipeline" / "embed.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "state": "running"}))
    res = sid("pipeline", "--config", str(changed), "--work-dir", str(work), "--until", "embed")
    assert res.returncode == 0, res.stderr[-3000:]
    assert actions(res.stdout) == {"data": "skip", "embed": "run", "index": "off", "convert": "off"}
    assert "interrupted" in res.stdout


# ----------------------------------------------------------------------------- the example, end to end
@pytest.mark.slow
def test_example_end_to_end_then_skips_then_reruns_only_what_changed(tmp_path):
    work = tmp_path / "work"
    p = example(tmp_path)
    first = sid("pipeline", "--config", str(p), "--work-dir", str(work))
    assert first.returncode == 0, first.stderr[-3000:]
    assert actions(first.stdout) == {s: "run" for s in STAGES}
    table = first.stdout[first.stdout.rindex("[pipeline] run eval"):]
    assert "HR sid" in table and "NDCG sid" in table and "n=64 beams=10" in table
    sft_dir = Path(json.loads((work / ".pipeline" / "sft.json").read_text())["run_dir"])
    assert sft_dir.parent == work / "sft" and (sft_dir / "run_summary.json").is_file()

    again = sid("pipeline", "--config", str(p), "--work-dir", str(work))
    assert again.returncode == 0, again.stderr[-3000:]
    assert actions(again.stdout) == {s: "skip" for s in STAGES}
    assert "HR sid" in again.stdout  # the saved table, printed again

    dry = sid("pipeline", "--config", str(p), "--work-dir", str(work), "--dry-run")
    assert actions(dry.stdout) == {s: "skip" for s in STAGES}

    # an eval option changed: only eval runs
    changed = example(tmp_path, "e.yaml", **{"eval/overrides/data.sample_test": 32})
    res = sid("pipeline", "--config", str(changed), "--work-dir", str(work))
    assert res.returncode == 0, res.stderr[-3000:]
    assert actions(res.stdout) == {**{s: "skip" for s in STAGES[:-1]}, "eval": "run"}
    assert "n=32 beams=10" in res.stdout

    # sft killed (SIGKILL) at its second checkpoint save: the rerun resumes in the same run folder
    saving = example(tmp_path, "s.yaml", **{"sft/overrides/train.save_steps": 10})
    killed = sid("pipeline", "--config", str(saving), "--work-dir", str(work), "--until", "sft",
                 env={"SID_FAILPOINT": "store.published:2"})
    assert killed.returncode < 0, killed.stderr[-3000:]
    rec = json.loads((work / ".pipeline" / "sft.json").read_text())
    assert rec["state"] == "running" and Path(rec["run_dir"]) != sft_dir
    resumed = sid("pipeline", "--config", str(saving), "--work-dir", str(work), "--until", "sft")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert actions(resumed.stdout)["sft"] == "run" and "interrupted" in resumed.stdout
    assert f"--output-dir {rec['run_dir']} " in resumed.stdout and "(step 10)" in resumed.stderr
    assert json.loads((work / ".pipeline" / "sft.json").read_text())["state"] == "done"
