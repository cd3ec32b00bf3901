"""The shipped run configs (configs/**/*.yaml) and the config reference (docs/config.md).

Every config resolves against the real plugins; the TPU experiments keep the reference recipe
(effective batch 1024 on every platform, the optimizer named by the file); two canonical
experiments are pinned by golden flat dumps (tests/golden/*.flat.txt; regenerate with
``SID_UPDATE_GOLDEN=1``); and docs/config.md names every kernel key that ``--help-keys`` prints.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from sidcore.config import loading
from sidcore.config.help import key_help
from sidcore.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]
# configs/pipeline/ holds `sid pipeline` YAMLs, not run configs (tests/pipeline checks them)
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml")
                 if p.parent.name != "pipeline")
GOLDEN = ROOT / "tests" / "golden"
CANONICAL = {
    "configs/tpu/v6e-8/industrial_adamw.yaml": "tpu_v6e8_industrial_adamw.flat.txt",
    "configs/official_eval/industrial_trie.yaml": "official_eval_industrial_trie.flat.txt",
}
# data.train_file falls back to the valid split when the train CSV is missing on this machine
MACHINE_KEYS = {"data.train_file"}
DEVICES = {"v4-8": 4, "v6e-8": 8, "v6e-16": 16}
HOSTS = {"v4-8": 1, "v6e-8": 1, "v6e-16": 4}
ACCUM = {"v4-8": 16, "v6e-8": 8, "v6e-16": 4}  # reference-spec §4.2: 1024 / (16 x replicas)


@pytest.fixture(scope="module")
def registry():
    return load_plugins(strict=True).registry


def load(path: str, registry, overrides=()):
    return loading.load_config(ROOT / path, registry, overrides=overrides)


def chain(path: Path) -> list[Path]:
    files = [path]
    while (base := loading.read_yaml(files[-1]).get("base")) is not None:
        files.append((files[-1].parent / base).resolve())
    return files


def mesh_dims(shape: str, n_devices: int, hosts: int) -> tuple[int, int, int]:
    """Hand-written twin of the kernel's mesh rule (auto: 1,N,1 on one host; hosts,N/hosts,1 else)."""
    if shape == "auto":
        return (hosts, n_devices // hosts, 1)
    dp, fsdp, tp = (int(x) for x in shape.split(","))
    assert dp * fsdp * tp == n_devices, f"mesh {shape} does not cover {n_devices} devices"
    return (dp, fsdp, tp)


def test_configs_found():
    assert "configs/default.yaml" in CONFIGS and len(CONFIGS) >= 30
    for rel in ("configs/tpu/v6e-8/industrial_adamw.yaml", "configs/tpu/v6e-8/industrial_optax_muon.yaml",
                "configs/tpu/v6e-8/industrial_muon_local.yaml", "configs/tpu/v6e-8/industrial_eval_dp8.yaml",
                "configs/tpu/v6e-16/industrial_adamw.yaml", "configs/tpu/v4-8/office_eval_dp4.yaml",
                *(f"configs/official_eval/{c}_{d}.yaml" for c in ("industrial", "office")
                  for d in ("trie", "pure_beam"))):
        assert rel in CONFIGS, rel


@pytest.mark.parametrize("path", CONFIGS)
def test_config_resolves(path: str, registry):
    cfg = load(path, registry)
    assert cfg.output_dir
    assert len(chain(ROOT / path)) <= 3, f"{path}: base chain longer than 3 files"


TPU_EXPERIMENTS = [p for p in CONFIGS if re.match(r"configs/tpu/v[^/]+/(industrial|office)_", p)]
OFFICIAL = [p for p in CONFIGS if p.startswith("configs/official_eval/") and not p.endswith("/base.yaml")]


@pytest.mark.parametrize("path", TPU_EXPERIMENTS)
def test_tpu_experiment_recipe(path: str, registry):
    platform, stem = path.split("/")[2], Path(path).stem
    cfg = load(path, registry)
    assert cfg.output_dir == f"runs/{stem}"
    assert cfg.base_model == "Qwen/Qwen2.5-1.5B"
    assert (cfg.jax.param_dtype, cfg.jax.compute_dtype) == ("bfloat16", "bfloat16")
    assert cfg.data.data_dir == "workdir/MiniOneRec/data/Amazon"
    category = {"industrial": "Industrial_and_Scientific", "office": "Office_Products"}[stem.split("_")[0]]
    assert cfg.data.category == category
    assert cfg.data.test_file == f"workdir/MiniOneRec/data/Amazon/test/{category}_5_2016-10-2018-11.csv"
    assert cfg.launcher.name == "tpu_vm" and cfg.launcher.options.accelerator_type == platform
    dp, fsdp, tp = mesh_dims(cfg.jax.mesh_shape, DEVICES[platform], HOSTS[platform])
    if "_eval_" in stem:
        assert cfg.run_mode == "eval" and (fsdp, tp) == (1, 1)
        assert stem.endswith(f"_dp{dp}") and cfg.eval.batch_size == dp
        assert cfg.train.resume_from_checkpoint
        return
    if stem.endswith("_rl"):  # RL from this platform's SFT run, upstream rl.sh batch (64 prompts x G=16)
        assert cfg.run_mode == "rl" and cfg.train.resume_from_checkpoint.startswith("runs/industrial_adamw")
        assert (cfg.rl.num_generations, cfg.rl.batch_size) == (16, 1024)
        assert (cfg.rl.batch_size // cfg.rl.num_generations) % (dp * fsdp) == 0
        return
    replicas = dp * fsdp
    micro = cfg.train.per_device_train_batch_size * replicas
    assert cfg.train.global_batch_size == 1024 and 1024 % micro == 0
    assert 1024 // micro == ACCUM[platform]
    name = cfg.optimizer.name
    assert stem.split("_", 1)[1].startswith(name)
    opts = cfg.optimizer.options
    if name == "adamw":
        assert cfg.train.learning_rate == 3e-4 and opts.mu_dtype == "float32"
    else:
        default_aux = {"optax_muon": 3e-4, "muon_local": 3e-3}[name]
        aux = {"aux3e3": 3e-3, "aux3e4": 3e-4}.get(stem.rsplit("_", 1)[1], default_aux)
        assert cfg.train.learning_rate == 3e-3 and opts.aux_learning_rate == aux


@pytest.mark.parametrize("path", OFFICIAL)
def test_official_eval(path: str, registry):
    cfg = load(path, registry)
    cat, decoder = Path(path).stem.split("_", 1)
    ckpt = {"industrial": "Industrial_ckpt", "office": "Office_ckpt"}[cat]
    assert cfg.base_model == f"workdir/hf_ckpts/kkknight_MiniOneRec/{ckpt}"
    assert cfg.run_mode == "eval" and cfg.decoder.name == decoder
    assert (cfg.eval.split, cfg.eval.num_beams, cfg.eval.topk) == ("test", 50, [1, 3, 5, 10, 20, 50])
    assert [m.name for m in cfg.metrics] == ["hr", "ndcg", "invalid"]
    assert cfg.output_dir == f"runs/official_{cat}_{decoder}"


def test_decoder_override_replaces_group(registry):
    cfg = load("configs/official_eval/industrial_pure_beam.yaml", registry, overrides=["decoder.name=trie"])
    assert cfg.decoder.name == "trie"
    cfg = load("configs/official_eval/industrial_trie.yaml", registry, overrides=["decoder.name=pure_beam"])
    assert cfg.decoder.options.fixed_length is False  # group replacement: the plugin's defaults


def machine_path(value: str) -> bool:
    """A path into this checkout or an installed package (bundled data): differs per machine."""
    return value.startswith(str(ROOT)) or "site-packages" in value


def flat_dump(path: str, registry) -> str:
    flat = loading.flatten(loading.to_dict(load(path, registry)))
    keep = {k: v for k, v in flat.items()
            if k not in MACHINE_KEYS and not (isinstance(v, str) and machine_path(v))}
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in keep.items())


@pytest.mark.parametrize("path", sorted(CANONICAL))
def test_golden_flat_dump(path: str, registry):
    golden = GOLDEN / CANONICAL[path]
    text = flat_dump(path, registry)
    if os.environ.get("SID_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), f"{path} resolves differently from {golden.name}"


def test_docs_name_every_kernel_key(registry):
    doc = (ROOT / "docs" / "config.md").read_text()
    kernel = [line.split(" = ", 1)[0] for line in key_help(registry)
              if not re.match(r"(optimizer|decoder|store|launcher|metrics|quantizer|reward)[.\[]", line)]
    assert len(kernel) > 60
    missing = [k for k in kernel if f"`{k}`" not in doc]
    assert not missing, f"docs/config.md lacks {missing} (see `sid config show --help-keys`)"


def test_docs_name_every_component(registry):
    doc = (ROOT / "docs" / "config.md").read_text()
    missing = [f"{s.kind}:{s.name}" for s in registry.all() if f"`{s.name}`" not in doc]
    assert not missing, f"docs/config.md lacks {missing}"


def test_config_doc_reference_is_generated_and_current(registry):
    """docs/config.md's key reference is the generator's output (schema + component config classes)."""
    from sidcore.config.doc import render_reference, splice

    doc = (ROOT / "docs" / "config.md").read_text()
    assert splice(doc, render_reference(registry)) == doc, \
        "docs/config.md is stale: run `python -m sidcore.config.doc --write docs/config.md`"
    assert "| `fused_scoring` | `true` |" in doc  # the trie decoder's option (once documented as none)
