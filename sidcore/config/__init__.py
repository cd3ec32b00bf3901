"""Run configuration: attrs schema and YAML/override loading (never imports jax)."""

from sidcore.config.loading import dump_yaml, flatten, load_config, resolve, to_dict
from sidcore.config.schema import ComponentConfig, RunConfig

__all__ = ["ComponentConfig", "RunConfig", "dump_yaml", "flatten", "load_config", "resolve", "to_dict"]
