"""The selected plugin components of a run, each built once through the registry.

`build_component` is the one place a factory is called; `build_components` builds what a job
needs from its config and the kernel context the factories take (see `sidcore.interfaces`).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from sidcore.config.schema import ComponentConfig, RunConfig
from sidcore.plugins import Plugins


def build_component(plugins: Plugins, kind: str, comp: ComponentConfig, **kwargs: Any) -> Any:
    """Instantiate the selected component of `kind` (its factory may import jax/optax now)."""
    return plugins.registry.get(kind, comp.name).build(comp.options, **kwargs)


@attrs.define(kw_only=True)
class Components:
    """What a job runs with: ``store`` always; ``decoder`` and ``metrics`` when it evaluates;
    ``optimizer`` (an optax transform, clipping chained in front) when it trains."""

    store: Any
    decoder: Any = None
    metrics: list[Any] = attrs.field(factory=list)
    optimizer: Any = None


def build_components(
    cfg: RunConfig,
    plugins: Plugins,
    *,
    store_uri: str,
    catalog: Any = None,
    eos_id: int | None = None,
    make_schedule: Callable[[float], Any] | None = None,
) -> Components:
    """Build the run's components; the decoder and metrics only with a `catalog`, the optimizer only
    with `make_schedule`."""
    comps = Components(store=build_component(plugins, "store", cfg.store, uri=store_uri))
    if catalog is not None:
        comps.decoder = build_component(plugins, "decoder", cfg.decoder, catalog=catalog, eos_id=eos_id)
        comps.metrics = [build_component(plugins, "metric", m) for m in cfg.metrics]
    if make_schedule is not None:
        import optax

        tx = build_component(plugins, "optimizer", cfg.optimizer, learning_rate=cfg.train.learning_rate,
                             make_schedule=make_schedule)
        if cfg.train.max_grad_norm > 0:
            tx = optax.chain(optax.clip_by_global_norm(cfg.train.max_grad_norm), tx)
        comps.optimizer = tx
    return comps
