"""The public surface for plugin authors: everything a plugin may import from the kernel.

A plugin imports ``sidcore.hookimpl`` and names from this module, nothing else of ``sidcore``
(`tests/unit/test_plugin_api.py` fails otherwise, for the built-ins and the example package). The
names resolve lazily (PEP 562), so ``from sidcore.api import ConfigError`` in a plugin's
``__init__`` stays as cheap as before and ``sid plugins list`` never imports JAX; heavy names
(decoding cores) import their module on first use.

Groups:

- registration and contracts: `hookimpl`, `Register`, the per-kind protocols and records of
  `sidcore.interfaces` (`CheckpointStore`, `Decoder`, `DecodeModel`, `Metric`, `Reward`,
  `RewardGroup`, `Launcher`, `LaunchPlan`, `LaunchStep`, `SidCatalog`, the launcher env names);
- errors: `SidError` and its subclasses, `file_error`;
- files: `atomic_write`, `write_temp` + `publish_file` (staged atomic writes), `unlink_quietly`,
  `fsync_dir`, `failpoint`, `msgpack_loads`, `read_msgpack_file`;
- config helpers for component options and commands that take a run config: `structure`,
  `parse_override`, `load_file_chain`, `load_config`, `uri_scheme`, `local_path`, `NAME_RE`, and ``sid run``'s own
  click command (`run_command`, `KIND_FLAGS`) for commands that forward its arguments;
- checkpoints by URI: `store_for`, `resolve_checkpoint`, `pick_name`, `split_uri`;
- a trained ``sid baseline`` model (`load_baseline`, for the CF reward);
- MiniOneRec data files: `read_index`, `read_info`, `read_items`, `split_paths`, `CSV_COLUMNS`, and the SID
  index helpers (`index_stats`, `format_stats`, `write_index`, `format_index`, `codes_to_index`,
  `dedup_index`, `DEDUP_MODES`, `level_token`);
- decoding building blocks for decoder plugins: `SidTrie`, `level_beam_search`, `trie_policy`,
  `forced_policy`, `free_policy`, `check_vocab`, `open_beam_search`;
- launch plans: `execute_plan`, `format_plan`, `echo_stderr`, `StepResult` (what ``sid tpu``
  commands run), `load_plugins`.
"""

from __future__ import annotations

import importlib
from typing import Any

from sidcore import hookimpl

_NAMES: dict[str, str] = {
    # registration and contracts
    "Register": "sidcore.interfaces",
    "CheckpointStore": "sidcore.interfaces",
    "Decoder": "sidcore.interfaces",
    "DecodeModel": "sidcore.interfaces",
    "FusedDecodeModel": "sidcore.interfaces",
    "Metric": "sidcore.interfaces",
    "Reward": "sidcore.interfaces",
    "RewardGroup": "sidcore.interfaces",
    "Launcher": "sidcore.interfaces",
    "LaunchPlan": "sidcore.interfaces",
    "LaunchStep": "sidcore.interfaces",
    "SidCatalog": "sidcore.interfaces",
    "ENV_COORDINATOR": "sidcore.interfaces",
    "ENV_NUM_PROCESSES": "sidcore.interfaces",
    "ENV_PROCESS_ID": "sidcore.interfaces",
    # errors
    "SidError": "sidcore.errors",
    "UsageError": "sidcore.errors",
    "ConfigError": "sidcore.errors",
    "DataError": "sidcore.errors",
    "CheckpointError": "sidcore.errors",
    "TrainingError": "sidcore.errors",
    "LaunchError": "sidcore.errors",
    "Preempted": "sidcore.errors",
    "file_error": "sidcore.errors",
    # files
    "atomic_write": "sidcore.files",
    "write_temp": "sidcore.files",
    "publish_file": "sidcore.files:publish",
    "unlink_quietly": "sidcore.files",
    "fsync_dir": "sidcore.files",
    "failpoint": "sidcore.files",
    "msgpack_loads": "sidcore.files",
    "read_msgpack_file": "sidcore.files",
    # config helpers
    "structure": "sidcore.config.loading",
    "parse_override": "sidcore.config.loading",
    "load_file_chain": "sidcore.config.loading",
    "load_config": "sidcore.config.loading",
    "KIND_FLAGS": "sidcore.cli.run_cmd",
    "run_command": "sidcore.cli.run_cmd:run",
    "uri_scheme": "sidcore.registry",
    "local_path": "sidcore.registry",
    "NAME_RE": "sidcore.registry",
    # checkpoints by URI
    "store_for": "sidcore.run.checkpoints",
    "resolve_checkpoint": "sidcore.run.checkpoints:resolve",
    "pick_name": "sidcore.run.checkpoints",
    "split_uri": "sidcore.run.checkpoints",
    # data files
    "read_index": "sidcore.data.minionerec",
    "read_info": "sidcore.data.minionerec",
    "read_items": "sidcore.data.minionerec",
    "split_paths": "sidcore.data.minionerec",
    "CSV_COLUMNS": "sidcore.data.minionerec",
    "index_stats": "sidcore.data.sid_index",
    "format_stats": "sidcore.data.sid_index",
    "write_index": "sidcore.data.sid_index",
    "codes_to_index": "sidcore.data.sid_index",
    "dedup_index": "sidcore.data.sid_index",
    "DEDUP_MODES": "sidcore.data.sid_index",
    "level_token": "sidcore.data.sid_index",
    "format_index": "sidcore.data.sid_index",
    "load_baseline": "sidcore.baselines.checkpoint:load_checkpoint",
    # decoding building blocks
    "SidTrie": "sidcore.decoding.trie",
    "level_beam_search": "sidcore.decoding.beam",
    "trie_policy": "sidcore.decoding.beam",
    "forced_policy": "sidcore.decoding.beam",
    "free_policy": "sidcore.decoding.beam",
    "check_vocab": "sidcore.decoding.beam",
    "open_beam_search": "sidcore.decoding.open_beam",
    # launch plans and plugins
    "execute_plan": "sidcore.run.executor:execute",
    "format_plan": "sidcore.run.executor",
    "echo_stderr": "sidcore.run.executor",
    "StepResult": "sidcore.run.executor",
    "load_plugins": "sidcore.plugins",
}

__all__ = ["hookimpl", *sorted(_NAMES)]


def __getattr__(name: str) -> Any:
    target = _NAMES.get(name)
    if target is None:
        raise AttributeError(f"sidcore.api has no {name!r}; plugins may import only: {', '.join(__all__)}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return list(__all__)
