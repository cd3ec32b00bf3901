"""Whole-process eval: ``sid run --run-mode eval`` vs an HF ``generate`` script, each a fresh process.

What a user waits for, start to exit: interpreter start-up, imports, tokenizer, model load, prompt
building, compilation (sid) and decoding. Not to be confused with `eval_vs_hf.py`, which times the
decode loop inside one process. Both systems evaluate the same weights on the same prompts with
the same beams; the 50-SID lists are compared (sid's ``eval_predictions.json`` vs the HF child's).

Scenarios:
- ``shape`` (default): a random model of ``--hidden/--layers`` with the real Qwen2.5 vocabulary + the
  SID tokens, exported once as an HF folder (weights + tokenizer) that both systems load;
  ``data.sample_test=--prompts`` test rows of ``--data-dir``.
- ``default``: the README's default run (``configs/default.yaml``, trained once into ``--work`` if
  missing) evaluated from its checkpoint; HF loads its ``sid export hf`` folder.

sid cache modes (``--modes``): ``cold`` = an empty ``jax.compile_cache`` folder per run, ``warm`` =
one folder filled by an untimed priming run, ``off`` = ``jax.compile_cache=off``. Runs are interleaved
(HF, then each sid mode) so a load swing hits every system alike.

Measurement (bench/method.py): ``--runs`` is the number of alternating rounds (default 3, at least
3; ``--rounds`` is the same flag, and an older ``--runs 2`` is raised to 3). The load gate runs
before the set-up; the other processes' CPU (children included in this run's own) is recorded over
the whole run. Reported per system: min, median, every run, and the ratios to HF of the mins and of
the medians; the JSON's ``method`` holds the loads and the idle mark. Not a test.

    .venv/bin/python bench/whole_process.py --data-dir ../shared/data/minionerec/Amazon \\
        --hidden 256 --layers 4 --prompts 64 --runs 3 --work /tmp/wp/shape
    .venv/bin/python bench/whole_process.py --scenario default --runs 3 --work /tmp/wp/default
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from method import Method, add_method_args, raise_rounds, report  # noqa: E402

DEFAULT_CFG = common.ROOT / "configs" / "default.yaml"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_args(p)
    p.add_argument("--scenario", default="shape", choices=["shape", "default"])
    p.add_argument("--work", type=Path, required=True, help="folder for the model, run dirs and caches")
    p.add_argument("--prompts", type=int, default=64, help="test rows (data.sample_test), both scenarios")
    p.add_argument("--beams", type=int, default=50)
    p.add_argument("--batch", type=int, default=8, help="eval.batch_size (HF batches the same)")
    p.add_argument("--modes", default="cold,warm", help="comma-separated sid cache modes: cold, warm, off")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the HF child")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--hf-child", nargs=3, metavar=("CONFIG", "OVERRIDES_JSON", "OUT"), help=argparse.SUPPRESS)
    add_method_args(p)
    p.add_argument("--runs", type=int, dest="rounds", default=3,
                   help="alternating rounds, each a fresh process per system (the same as --rounds)")
    return p.parse_args()


def run_timed(argv: list[str], log: Path) -> float:
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' interpreters cache bytecode
    t0 = time.perf_counter()
    with open(log, "w") as f:
        res = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=common.ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{argv[:4]} failed (exit {res.returncode}); see {log}")
    return wall


def sid_argv(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("sid")), *args]


def setup_shape(args: argparse.Namespace) -> tuple[Path, list[str], Path]:
    """(config, overrides, HF folder): a random model of the bench shape exported with its tokenizer."""
    model_dir = args.work / "model"
    extra = [f"data.data_dir={args.data_dir}", f"data.sample_test={args.prompts}", f"eval.batch_size={args.batch}",
             f"eval.num_beams={args.beams}", f"seed={args.seed}"]
    if not (model_dir / "config.json").exists():
        cfg = common.load_cfg(args, [f"eval.num_beams={args.beams}"])
        bundle = common.build_bundle(cfg)
        from sidcore.model import export_hf

        tok = bundle.tokenizer
        export_hf(bundle.model, None, model_dir, extra_config={"eos_token_id": int(tok.eos_token_id),
                                                              "pad_token_id": int(tok.pad_token_id)})
        tok.save_pretrained(str(model_dir))
    return DEFAULT_CFG, [f"base_model={model_dir}", *extra], model_dir


def setup_default(args: argparse.Namespace) -> tuple[Path, list[str], Path]:
    """(config, overrides, HF folder): the default run (trained once) and its `sid export hf` folder."""
    run_dir, model_dir = args.work / "default-run", args.work / "default-hf"
    if not (run_dir / "run_summary.json").exists():
        run_timed(sid_argv("run", "--config", str(DEFAULT_CFG), f"output_dir={run_dir}"), args.work / "train.log")
    if not (model_dir / "config.json").exists():
        run_timed(sid_argv("export", "hf", str(run_dir), str(model_dir)), args.work / "export.log")
    # the HF side decodes ~3 prompts/s here: time --prompts of the default run's test rows, not all 1000
    return DEFAULT_CFG, [f"train.resume_from_checkpoint={run_dir}", f"data.sample_test={args.prompts}"], model_dir


def hf_child(config: str, overrides: list[str], out: str) -> None:
    """The HF side as a user would write it: tokenizer + model from the folder, prompts, trie, generate."""
    import torch
    import transformers

    import eval_vs_hf
    from sidcore.config import loading
    from sidcore.data.catalog import build_catalog
    from sidcore.data.tasks import build_eval_prompts
    from sidcore.plugins import load_plugins

    model_dir = overrides.pop()
    cfg = loading.load_config(config, load_plugins().registry, overrides=overrides)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = transformers.Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, tok)
    prompts = build_eval_prompts(cfg.data, tok, split=cfg.eval.split, seed=cfg.seed)
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    res = eval_vs_hf.hf_eval(model, tok, catalog, prompts, cfg.eval.num_beams, cfg.eval.batch_size, threads,
                             device="cpu")
    Path(out).write_text(json.dumps({"preds": res["preds"], "decode_s": res["seconds"]}))


def sid_run(config: Path, overrides: list[str], out: Path, cache: str) -> tuple[float, list[list[str]]]:
    wall = run_timed(sid_argv("run", "--config", str(config), "--run-mode", "eval", "--decoder", "trie",
                              f"output_dir={out}", f"jax.compile_cache={cache}", *overrides), out.with_suffix(".log"))
    records = json.loads((out / "eval_predictions.json").read_text())
    return wall, [r["predict"] for r in records]


def hf_run(config: Path, overrides: list[str], model_dir: Path, out: Path, threads: int) -> tuple[float, Any]:
    argv = [sys.executable, __file__, "--work", str(out.parent), "--hf-child", str(config),
            json.dumps([*overrides, str(model_dir)]), str(out)]
    os.environ["BENCH_THREADS"] = str(threads)
    wall = run_timed(argv, out.with_suffix(".log"))
    return wall, json.loads(out.read_text())


def summary_row(name: str, walls: list[float], hf: list[float]) -> list[Any]:
    med = statistics.median(walls)
    ratio = f"{statistics.median(hf) / med:.1f}x" if hf else "-"
    ratio_min = f"{min(hf) / min(walls):.1f}x" if hf else "-"
    return [name, f"{min(walls):.1f}", f"{med:.1f}", " / ".join(f"{w:.1f}" for w in walls), ratio, ratio_min]


def main() -> None:
    args = parse()
    if args.hf_child:
        config, overrides, out = args.hf_child
        return hf_child(config, json.loads(overrides), out)
    raise_rounds(args, "--runs")
    method = Method.from_args(args)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {common.machine_line()}", flush=True)
    with method.session():  # the load gate before the set-up; others' CPU over the whole run
        walls, preds = measure(args, method)
    modes = [m for m in walls if m != "hf"]
    summary = {}
    for m in modes:
        if walls["hf"]:
            print(f"sid {m} vs hf (whole-process seconds):")
            summary[m] = report({"hf": walls["hf"], m: walls[m]}, reference="hf", subject=m)
    rows = [summary_row(f"sid run --run-mode eval (cache {m})", walls[m], walls["hf"]) for m in modes]
    if walls["hf"]:
        rows.append(summary_row("hf generate + trie processor (script)", walls["hf"], walls["hf"]))
        same = {m: sum(a == b for a, b in zip(preds["hf"], preds[m])) for m in modes}
        print(f"same {args.beams}-SID list as HF: " + ", ".join(f"{m} {n}/{len(preds['hf'])}" for m, n in same.items()))
    print(common.table(rows, ["system (fresh process)", "min s", "median s", "runs s", "vs HF (median)",
                              "vs HF (min)"]))
    rec = method.record
    print(f"method: {args.rounds} alternating rounds; load before {rec['load_before'][0]:.2f}, others "
          f"{rec['others_cores']:.2f} cores -> {'idle' if rec['idle'] else 'LOADED'}")
    print(f"machine after: {common.machine_line()}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "walls": walls,
                                         "summary": summary, "method": rec}, indent=2))


def measure(args: argparse.Namespace, method: Method) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Set up (model folder, warm cache), then HF and each sid mode alternately, a fresh process each."""
    config, overrides, model_dir = (setup_shape if args.scenario == "shape" else setup_default)(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    preds: dict[str, Any] = {}
    if "warm" in modes:  # prime the warm cache (untimed)
        sid_run(config, overrides, args.work / "sid-prime", str(args.work / "cache-warm"))
    count: dict[str, int] = {}

    def hf_side() -> float:
        i = count["hf"] = count.get("hf", -1) + 1
        wall, hf = hf_run(config, overrides, model_dir, args.work / f"hf-{i}.json", args.threads)
        preds["hf"] = hf["preds"]
        print(f"run {i}: hf {wall:.1f} s (decode {hf['decode_s']:.1f} s)", flush=True)
        return wall

    def sid_side(m: str) -> float:
        i = count[m] = count.get(m, -1) + 1
        cache = {"cold": str(args.work / f"cache-cold-{i}"), "warm": str(args.work / "cache-warm"), "off": "off"}[m]
        wall, preds[m] = sid_run(config, overrides, args.work / f"sid-{m}-{i}", cache)
        return wall

    sides = {} if args.skip_hf else {"hf": hf_side}
    sides.update({f"sid {m}": (lambda m=m: sid_side(m)) for m in modes})
    times = method.alternate(sides)
    walls = {"hf": times.get("hf", []), **{m: times[f"sid {m}"] for m in modes}}
    return walls, preds

if __name__ == "__main__":
    main()
