"""``sid run --dry-run``: the checks a real run makes before its first step, without running it.

A dry run loads no model weights and no data, writes nothing and creates no folder, but it refuses
what the real run would refuse before training: a checkpoint URI no installed store serves, a
``jax.mesh_shape`` that does not parse (or, for an in-process run, does not fit this machine's
devices), batch math that does not divide over the mesh, an RL batch that does not split into
groups, a missing data file or start checkpoint, and (in process) a run folder whose checkpoint
belongs to another stage or was trained with other settings (`sidcore.train.checkpointing`).
A remote launcher's devices are not known here: its mesh is checked for form, and for batch math
only when every axis is given.
"""

from __future__ import annotations

from pathlib import Path
import attrs

from sidcore.config.schema import RunConfig
from sidcore.errors import ConfigError, DataError
from sidcore.plugins import Plugins
from sidcore.registry import local_path, uri_scheme


@attrs.frozen
class _Mesh:
    """Just the axis sizes batch math reads (``mesh.shape[...]``)."""

    shape: dict[str, int]


def mesh_for_checks(shape: str, n_devices: int | None) -> _Mesh | None:
    """The mesh a run would build, for batch math; None when a remote device count is needed."""
    from sidcore.model.sharding import parse_mesh_shape

    text = shape.strip().lstrip("!")
    if n_devices is None:
        if text in ("", "auto"):
            return None
        # form only: parse against the product of the given sizes (a -1 axis is left unknown)
        try:
            sizes = [int(p.split(":")[-1]) for p in text.split(",") if p.strip()]
        except ValueError:
            sizes = []
        known = 1
        for s in sizes:
            known *= s if s > 0 else 1
        dims = parse_mesh_shape(shape, known)
        if -1 in sizes:
            return None
    else:
        dims = parse_mesh_shape(shape, n_devices)
    return _Mesh(shape=dict(zip(("dp", "fsdp", "tp"), dims)))


def check(cfg: RunConfig, plugins: Plugins, *, in_process: bool, device_memory: float | None = None) -> list[str]:
    """Run the pre-start checks; returns what was checked (for the dry-run's report)."""
    from sidcore.run.assemble import store_uri
    from sidcore.run.checkpoints import resolve

    done = []
    uri = store_uri(cfg)
    plugins.registry.store_for_uri(uri)
    done.append(f"checkpoints -> {uri}")
    n_devices = None
    if in_process:
        import jax

        n_devices = jax.device_count()
    mesh = mesh_for_checks(cfg.jax.mesh_shape, n_devices)
    done.append(f"mesh {cfg.jax.mesh_shape!r}" + (f" -> {mesh.shape}" if mesh else " (devices known on the host)"))
    trains = cfg.run_mode in ("train", "train_eval")
    if trains and mesh is not None:
        from sidcore.train.plan import batch_math

        math_ = batch_math(cfg.train, mesh)
        done.append(f"batch: {math_.micro_rows} rows x {math_.accumulation} accumulation")
    if cfg.run_mode == "rl":
        if cfg.rl.batch_size % cfg.rl.num_generations:
            raise ConfigError(f"rl.batch_size={cfg.rl.batch_size} is not a multiple of "
                              f"rl.num_generations={cfg.rl.num_generations}")
        done.append(f"rl: {cfg.rl.batch_size // cfg.rl.num_generations} prompts x {cfg.rl.num_generations}")
    from sidcore.run import memory_plan

    # docs/memory.md: refuses a plan that cannot fit the device memory
    done.append(memory_plan.check(cfg, mesh, in_process=in_process, device_memory_gib=device_memory))
    if not in_process:
        return done
    for key in ("train_file", "eval_file", "test_file", "info_file", "sid_index_path"):
        path = getattr(cfg.data, key)
        if path and uri_scheme(str(path)) == "file" and not Path(path).is_file():
            raise DataError(f"data.{key}: {path}: no such file")
    if cfg.train.resume_from_checkpoint:
        resolve(cfg.train.resume_from_checkpoint)
    if trains or cfg.run_mode == "rl":
        done.append(_identity(cfg, plugins, uri))
    return done


def _identity(cfg: RunConfig, plugins: Plugins, uri: str) -> str:
    from sidcore.run.checkpoints import check_own_store
    from sidcore.run.identity import run_settings, stage_of
    from sidcore.train.checkpointing import own_resume

    if uri_scheme(uri) == "file" and not Path(local_path(uri)).is_dir():
        return "fresh run (no checkpoint folder yet)"
    check_own_store(uri, cfg.store.name, plugins.registry)
    spec = plugins.registry.get("store", cfg.store.name)
    store = spec.build(cfg.store.options, uri=uri)
    resumed = own_resume(store, resume_fallback=cfg.train.resume_fallback, stage=stage_of(cfg),
                         settings=run_settings(cfg))
    return "fresh run" if resumed is None else f"resumes {resumed.source} (step {resumed.step}, same settings)"


def report(done: list[str]) -> str:
    lines = [d for d in done if "\n" in d]  # the memory plan prints as its own block
    return "\n".join(lines + ["dry run: checks passed: " + "; ".join(d for d in done if "\n" not in d)])
