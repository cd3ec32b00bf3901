"""Config: base inheritance, key=value overrides, component sections, errors naming file and key."""

from __future__ import annotations

import attrs
import re

import pytest

from sidcore import hookimpl
from sidcore.config import loading
from sidcore.errors import ConfigError
from sidcore.plugins import load_plugins


@attrs.frozen(kw_only=True)
class AdamCfg:
    b1: float = 0.9
    mu_dtype: str | None = None


@attrs.frozen(kw_only=True)
class MuonCfg:
    aux_learning_rate: float = 3e-4
    ns_steps: int = attrs.field(default=5, validator=attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class Empty:
    pass


@attrs.frozen(kw_only=True)
class TopK:
    topk: list[int] = attrs.field(factory=lambda: [1, 10])


class Fake:
    @hookimpl
    def register_optimizers(self, register):
        register("adamw", lambda c, **k: None, config=AdamCfg)
        register("muon_local", lambda c, **k: None, config=MuonCfg)

    @hookimpl
    def register_decoders(self, register):
        register("trie", lambda c, **k: None, config=Empty)

    @hookimpl
    def register_metrics(self, register):
        register("hr", lambda c: None, config=TopK)
        register("ndcg", lambda c: None, config=TopK)
        register("invalid", lambda c: None, config=Empty)

    @hookimpl
    def register_checkpoint_stores(self, register):
        register("msgpack", lambda c, **k: None, config=Empty)

    @hookimpl
    def register_launchers(self, register):
        register("local", lambda c: None, config=Empty)


@pytest.fixture
def registry():
    return load_plugins(entry_points=False, extra=[("fake", Fake())], strict=True).registry


def write(path, text):
    path.write_text(text)
    return path


def test_defaults(registry):
    cfg = loading.load_config(None, registry)
    assert cfg.optimizer.name == "adamw" and cfg.decoder.name == "trie"
    assert [m.name for m in cfg.metrics] == ["hr", "ndcg", "invalid"]
    assert cfg.train.learning_rate == 3e-4 and cfg.seed == 42


def test_base_chain_and_overrides(tmp_path, registry):
    write(tmp_path / "base.yaml", "seed: 1\ntrain:\n  learning_rate: 1.0e-3\n  warmup_steps: 20\n")
    (tmp_path / "exp").mkdir()
    f = write(tmp_path / "exp" / "x.yaml", "base: ../base.yaml\ntrain:\n  warmup_steps: 5\noptimizer:\n  name: adamw\n  b1: 0.8\n")
    cfg = loading.load_config(f, registry, overrides=["train.learning_rate=2e-3", "seed=7", "data.pad_buckets=[8,16]"])
    assert cfg.seed == 7
    assert cfg.train.learning_rate == 2e-3 and cfg.train.warmup_steps == 5
    assert cfg.optimizer.options.b1 == 0.8
    assert cfg.data.pad_buckets == [8, 16]


def test_component_switch_resets_options(tmp_path, registry):
    f = write(tmp_path / "x.yaml", "optimizer:\n  name: adamw\n  b1: 0.8\n")
    cfg = loading.load_config(f, registry, overrides=["optimizer.name=muon_local", "optimizer.ns_steps=3"])
    assert cfg.optimizer.name == "muon_local"
    assert cfg.optimizer.options == MuonCfg(ns_steps=3)
    cfg = loading.load_config(f, registry, selections={"optimizer": "muon_local"})
    assert cfg.optimizer.options == MuonCfg()


def test_unknown_keys_suggest(tmp_path, registry):
    f = write(tmp_path / "x.yaml", "train:\n  learnin_rate: 1\n")
    with pytest.raises(ConfigError, match=r"x.yaml: train.learnin_rate: unknown key \(did you mean: learning_rate"):
        loading.load_config(f, registry)
    f = write(tmp_path / "y.yaml", "optimizer:\n  name: muon_local\n  ns_stepz: 3\n")
    with pytest.raises(ConfigError, match=r"optimizer.ns_stepz: unknown key \(did you mean: ns_steps\?\)"):
        loading.load_config(f, registry)
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean: train"):
        loading.load_config(None, registry, overrides=["trian.x=1"])
    with pytest.raises(ConfigError, match=r"optimizer.name: unknown optimizer 'muon_locl' \(did you mean: muon_local\?\)"):
        loading.load_config(None, registry, overrides=["optimizer.name=muon_locl"])


def test_override_errors_name_the_command_line_not_the_file(tmp_path, registry):
    f = write(tmp_path / "ok.yaml", "train:\n  learning_rate: 1.0e-3\n")
    cases = {"train.lerning_rate=1": r"train.lerning_rate: unknown key \(did you mean: learning_rate",
             "train.max_steps=abc": "train.max_steps: expected an integer",
             "train.lr_schedule=zigzag": "'lr_schedule' must be in",
             "trian.x=1": "unknown key 'trian'",
             "metrics=[zz]": "metrics\\[0\\].name: unknown metric 'zz'"}
    for override, msg in cases.items():
        with pytest.raises(ConfigError) as info:
            loading.load_config(f, registry, overrides=["seed=3", override])
        text = str(info.value)
        assert text.startswith(f"command-line override {override!r}: "), text
        assert re.search(msg, text) and "ok.yaml" not in text, text
    bad = write(tmp_path / "bad.yaml", "train:\n  lerning_rate: 1\n")  # the file's own typo: the file
    with pytest.raises(ConfigError, match=r"bad.yaml: train.lerning_rate: unknown key"):
        loading.load_config(bad, registry, overrides=["seed=3"])


def test_bad_values(tmp_path, registry):
    with pytest.raises(ConfigError, match="train.warmup_steps: expected an integer, got 'many'"):
        loading.load_config(None, registry, overrides=["train.warmup_steps=many"])
    with pytest.raises(ConfigError, match="'lr_schedule' must be in"):
        loading.load_config(None, registry, overrides=["train.lr_schedule=zigzag"])
    with pytest.raises(ConfigError, match="'ns_steps' must be > 0"):
        loading.load_config(None, registry, overrides=["optimizer.name=muon_local", "optimizer.ns_steps=0"])
    with pytest.raises(ConfigError, match="given twice"):
        loading.load_config(None, registry, overrides=["seed=1", "seed=2"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        loading.load_config(None, registry, overrides=["seed"])


def test_yaml_errors_name_file_and_line(tmp_path, registry):
    f = write(tmp_path / "bad.yaml", "train:\n  learning_rate: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        loading.load_config(f, registry)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        loading.load_config(tmp_path / "missing.yaml", registry)
    f = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        loading.load_config(f, registry)


def test_data_dir_fills_paths(tmp_path, registry):
    cfg = loading.load_config(None, registry, overrides=[f"data.data_dir={tmp_path}", "data.category=Office_Products",
                                                        "data.info_file=/explicit.txt"])
    d = cfg.data
    assert d.test_file == str(tmp_path / "test" / "Office_Products_5_2016-10-2018-11.csv")
    assert d.sid_index_path == str(tmp_path / "index" / "Office_Products.index.json")
    assert d.info_file == "/explicit.txt"
    # no train split in the folder -> train on valid (documented protocol)
    assert d.train_file == d.eval_file


def test_dump_roundtrip(tmp_path, registry):
    cfg = loading.load_config(None, registry, overrides=["optimizer.name=muon_local", "train.max_steps=3"])
    f = write(tmp_path / "resolved.yaml", loading.dump_yaml(cfg))
    assert loading.load_config(f, registry) == cfg
    flat = loading.flatten(loading.to_dict(cfg))
    assert flat["optimizer.name"] == "muon_local" and flat["train.max_steps"] == 3


def test_base_chain_component_switch_drops_parent_options(tmp_path, registry):
    write(tmp_path / "base.yaml", "optimizer:\n  name: adamw\n  b1: 0.8\ndecoder: trie\n")
    f = write(tmp_path / "x.yaml", "base: base.yaml\noptimizer:\n  name: muon_local\n")
    cfg = loading.load_config(f, registry)
    assert cfg.optimizer.name == "muon_local" and cfg.optimizer.options == MuonCfg()
    f = write(tmp_path / "y.yaml", "base: base.yaml\noptimizer:\n  b1: 0.7\n")
    assert loading.load_config(f, registry).optimizer.options.b1 == 0.7
    # bare-string component sections accept option overrides
    f = write(tmp_path / "z.yaml", "optimizer: muon_local\n")
    assert loading.load_config(f, registry, overrides=["optimizer.ns_steps=2"]).optimizer.options.ns_steps == 2
