"""``sid run``: resolve the config chain and flags, then hand the run to `sidcore.run.launch`."""

from __future__ import annotations

import click

from sidcore.config import loading
from sidcore.errors import ConfigError, UsageError

KIND_FLAGS = ("optimizer", "decoder", "store", "launcher")


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Config YAML.")
@click.option("--run-mode", type=click.Choice(["train", "eval", "train_eval", "rl"]), help="Sugar for run_mode=...")
@click.option("--plugin", "plugin_names", multiple=True,
              help="Select a component by name; its kind is inferred (e.g. optax_muon -> optimizer.name).")
@click.option("--optimizer", help="Sugar for optimizer.name=...")
@click.option("--decoder", help="Sugar for decoder.name=...")
@click.option("--store", help="Sugar for store.name=...")
@click.option("--launcher", help="Sugar for launcher.name=...")
@click.option("--output-dir", help="Sugar for output_dir=...")
@click.option("--dry-run", is_flag=True, help="Resolve config and print the launch plan; run nothing.")
@click.option("--device-memory", type=click.FloatRange(min=0), metavar="GiB",
              help="Memory of one device for the memory plan (default: from the accelerator; 0: do not check).")
@click.argument("overrides", nargs=-1)
@click.pass_obj
def run(state, config_path: str, run_mode: str | None, plugin_names: tuple[str, ...], optimizer: str | None,
        decoder: str | None, store: str | None, launcher: str | None, output_dir: str | None, dry_run: bool,
        device_memory: float | None, overrides: tuple[str, ...]) -> None:
    """Train and/or evaluate: sid run --config PATH [--plugin NAME]... [KEY=VALUE ...]."""
    from sidcore.run.launch import launch

    registry = state.plugins.registry
    selections: dict[str, str] = {}
    for name in plugin_names:
        spec = registry.find(name)
        if spec.kind == "metric":
            raise UsageError(f"--plugin '{name}' is a metric; set metrics=[...] instead")
        if spec.kind not in KIND_FLAGS:
            raise UsageError(f"--plugin '{name}' is a {spec.kind}; select it in the config instead")
        selections[spec.kind] = name
    for kind, value in zip(KIND_FLAGS, (optimizer, decoder, store, launcher)):
        if value:
            if kind in selections and selections[kind] != value:
                raise UsageError(f"--{kind} {value} conflicts with --plugin {selections[kind]}")
            selections[kind] = value
    extra = list(overrides)
    if run_mode:
        extra.append(f"run_mode={run_mode}")
    if output_dir:
        extra.append(f"output_dir={output_dir}")
    try:
        cfg = loading.load_config(config_path, registry, overrides=extra, selections=selections)
    except ConfigError as exc:  # a component chosen by a flag: name the flag, not the YAML file
        for kind, name in selections.items():
            head = f"{config_path}: {kind}.name: "
            if str(exc).startswith(head):
                flag = f"--plugin {name}" if name in plugin_names else f"--{kind} {name}"
                raise UsageError(f"{flag}: {str(exc)[len(head):]}") from None
        raise
    argv = replay_argv(config_path, selections, extra)
    launch(cfg, state.plugins, config_path=config_path, argv=argv, dry_run=dry_run, device_memory=device_memory)


def replay_argv(config_path: str, selections: dict[str, str], overrides: list[str]) -> list[str]:
    """The ``sid run`` arguments a launcher replays in child processes (launcher choice removed)."""
    argv = ["--config", config_path]
    for kind, name in selections.items():
        if kind != "launcher":
            argv += [f"--{kind}", name]
    return argv + [o for o in overrides if not o.startswith("launcher.")]
