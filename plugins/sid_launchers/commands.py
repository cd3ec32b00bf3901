"""``sid tpu ...`` (Cloud TPU VM operations) and ``sid stub-path``, added through ``register_commands``.

Each ``sid tpu`` command builds a plan with `sid_launchers.tpu_vm` and hands it to the kernel's
executor; ``--dry-run`` prints the plan and runs nothing. Settings come from the ``launcher:``
section of a run config (``--config``, used when it names ``tpu_vm``), then ``--set KEY=VALUE``,
then the explicit flags. The decision logic (zone fallback, waiting for READY, supervising a run
through spot preemptions) lives in `sid_launchers.supervise`.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from sid_launchers import supervise as sup
from sid_launchers import tpu_vm as tv
from sid_launchers.config import PROVISIONING, TpuVmConfig
from sidcore.api import LaunchError, UsageError


# ------------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------------


def load_tpu_config(config_path: str | None, sets: tuple[str, ...], flags: dict[str, Any]) -> TpuVmConfig:
    """`TpuVmConfig` from a run config's ``launcher`` section, ``--set`` overrides and flags."""
    from sidcore.api import load_file_chain, parse_override, structure

    raw: dict[str, Any] = {}
    if config_path:
        section = load_file_chain(config_path).get("launcher")
        if isinstance(section, dict) and section.get("name") == "tpu_vm":
            raw = {k: val for k, val in section.items() if k != "name"}
    for text in sets:
        keys, value = parse_override(text)
        if keys[0] == "launcher":
            keys = keys[1:]
        if len(keys) != 1:
            raise UsageError(f"--set {text}: expected KEY=VALUE with a tpu_vm option name")
        raw[keys[0]] = value
    raw.update({k: val for k, val in flags.items() if val is not None})
    return structure(TpuVmConfig, raw, f"{config_path or 'sid tpu'}: launcher(tpu_vm)")


def _run_mode(config_path: str | None, run_mode: str | None) -> str:
    if run_mode:
        return run_mode
    if config_path:
        from sidcore.api import load_file_chain

        mode = load_file_chain(config_path).get("run_mode")
        if isinstance(mode, str):
            return mode
    return "train_eval"


def _tag(config_path: str | None, run_mode: str | None) -> str | None:
    if not config_path:
        return None
    return tv.run_tag(tv.remote_config_path(config_path), _run_mode(config_path, run_mode))


def _run_argv(
    config_path: str | None, run_mode: str | None, overrides: tuple[str, ...]
) -> tuple[list[str], str]:
    if not config_path:
        raise UsageError("--config is required to start a run")
    mode = _run_mode(config_path, run_mode)
    argv = ["--config", config_path, "--run-mode", mode, *overrides]
    check_run_locally(argv)
    request = {"argv": argv, "config_path": config_path, "run_mode": mode}
    return tv.run_request(request)


def check_run_locally(argv: list[str]) -> None:
    """Resolve the config ``sid run ARGV`` would run, here, before anything reaches a VM: unknown
    keys and bad values (``train.nosuch=5``, ``train.learning_rate=-1``) fail on this machine, with
    the message ``sid run`` gives. Data files and the mesh are the VM's and are checked there.

    Raises:
        ConfigError: the config or an override is invalid.
        UsageError: an argument ``sid run`` would not accept.
    """
    from sidcore.api import KIND_FLAGS, load_config
    from sidcore.api import run_command as run

    ctx = click.get_current_context(silent=True)
    plugins = getattr(getattr(ctx, "obj", None), "plugins", None) if ctx is not None else None
    if plugins is None:  # `sid tpu` mounted on a bare group (tests): load the plugins as `sid` does
        from sidcore.api import load_plugins

        plugins = load_plugins()
    registry = plugins.registry
    try:
        # under the caller's context, so `run` sees the CLI's settings (help option names) as `sid run` does
        params = run.make_context("run", list(argv), parent=ctx).params
    except click.ClickException as exc:
        raise UsageError(f"sid tpu: the arguments for sid run are invalid: {exc.format_message()}") from None
    selections = {registry.find(n).kind: n for n in params["plugin_names"]}
    selections.update({k: params[k] for k in KIND_FLAGS if params.get(k)})
    overrides = list(params["overrides"])
    overrides += [f"{k}={params[k]}" for k in ("run_mode", "output_dir") if params.get(k)]
    load_config(params["config_path"], registry, overrides=overrides, selections=selections)


_COMMON = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False),
                 help="Run config whose `launcher: {name: tpu_vm, ...}` section holds the settings."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one tpu_vm option."),
    click.option("--tpu-name", help="Sugar for --set tpu_name=..."),
    click.option("--zone", help="Sugar for --set zone=..."),
    click.option("--project", help="Sugar for --set project=..."),
    click.option("--accelerator-type", "--type", "accelerator_type",
                 help="Sugar for --set accelerator_type=..."),
    click.option("--repo-url", help="Sugar for --set repo_url=... (the git URL bootstrap clones)."),
    click.option("--dry-run", is_flag=True, help="Print the plan; run nothing."),
]


def tpu_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options every ``sid tpu`` command shares (consumed by `_ops`)."""
    for opt in reversed(_COMMON):
        fn = opt(fn)
    return fn


def _ops(kw: dict[str, Any], **extra: Any) -> tuple[sup.TpuOps, str | None]:
    """Pop the shared options from a command's kwargs; build the settings and the operations object."""
    config_path = kw.pop("config_path")
    sets = kw.pop("sets")
    dry_run = kw.pop("dry_run")
    flags = {k: kw.pop(k) for k in ("tpu_name", "zone", "project", "accelerator_type", "repo_url")}
    flags.update(extra)
    return sup.TpuOps(load_tpu_config(config_path, sets, flags), dry_run=dry_run), config_path


# ------------------------------------------------------------------------------------------------
# sid tpu
# ------------------------------------------------------------------------------------------------


@click.group("tpu")
def tpu() -> None:
    """Cloud TPU VMs through gcloud: create, bootstrap, sync-env, exec, copy, run, status, logs,
    exit-code, stop, delete, supervise (auto-resume after spot preemption)."""


@tpu.command("create")
@click.option("--spot/--on-demand", "spot", default=None, help="Sugar for provisioning=spot / on_demand.")
@click.option("--provisioning", type=click.Choice(PROVISIONING), help="Sugar for --set provisioning=...")
@click.option("--version", "runtime_version", help="Sugar for --set runtime_version=... (default: auto).")
@tpu_options
def create(spot: bool | None, provisioning: str | None, runtime_version: str | None, **kw: Any) -> None:
    """Create the VM (or queued resource), trying zones_fallback on capacity/quota errors."""
    if spot is not None and provisioning is not None:
        raise UsageError("use either --spot/--on-demand or --provisioning")
    if spot is not None:
        provisioning = "spot" if spot else "on_demand"
    ops, _ = _ops(kw, provisioning=provisioning, runtime_version=runtime_version)
    zone = ops.create()
    if zone is not None and zone != ops.cfg.zone:
        click.echo(f"created {tv.vm_name(ops.cfg)} in fallback zone {zone}; "
                   f"pass --zone {zone} to later commands", err=True)


@tpu.command("bootstrap")
@tpu_options
def bootstrap(**kw: Any) -> None:
    """Install the env (venv/conda), jax[tpu], clone repo_url@repo_ref (--repo-url), pip install -e on
    all workers."""
    _ops(kw)[0].bootstrap()


@tpu.command("sync-env")
@tpu_options
def sync_env(**kw: Any) -> None:
    """Copy env_file (.env) to /root/.env on all workers with mode 600 (contents never echoed)."""
    _ops(kw)[0].sync_env()


def _worker(worker: str) -> str:
    if worker != "all" and not worker.isdigit():
        raise UsageError(f"--worker {worker}: expected an index or 'all'")
    return worker


@tpu.command("exec")
@click.option("--worker", default="all", show_default=True, help="Worker index (or all).")
@click.option("--in-workdir", is_flag=True, help="cd into the checkout (workdir) and activate the env first.")
@click.argument("command", nargs=-1, required=True)
@tpu_options
def exec_cmd(worker: str, in_workdir: bool, command: tuple[str, ...], **kw: Any) -> None:
    """Run a shell COMMAND on the workers (put it after `--`, quoted), e.g. fetch data or a checkpoint:
    sid tpu exec --tpu-name VM -- 'git clone https://github.com/AkaliKong/MiniOneRec /root/MiniOneRec'."""
    _ops(kw)[0].exec(" ".join(command), worker=_worker(worker), in_workdir=in_workdir)


@tpu.command("copy")
@click.option("--worker", default="all", show_default=True, help="Worker index (or all; copies to the VM only).")
@click.option("--recurse", is_flag=True, help="Copy folders.")
@click.argument("src")
@click.argument("dst")
@tpu_options
def copy_cmd(worker: str, recurse: bool, src: str, dst: str, **kw: Any) -> None:
    """scp SRC to DST through gcloud; the VM side is written :PATH
    (sid tpu copy --recurse data/Amazon :/root/data/Amazon --tpu-name VM)."""
    _ops(kw)[0].copy(src, dst, worker=_worker(worker), recurse=recurse)


@tpu.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--run-mode", type=click.Choice(tv.RUN_MODES), help="Run mode (default: the config's).")
@click.argument("overrides", nargs=-1)
@tpu_options
def run(run_mode: str | None, overrides: tuple[str, ...], **kw: Any) -> None:
    """Start `sid run --config PATH [KEY=VALUE...]` detached on all workers (.log/.exit/.pid files)."""
    ops, config_path = _ops(kw)
    argv, tag = _run_argv(config_path, run_mode, overrides)
    ops.run(argv, tag)


@tpu.command("status")
@tpu_options
def status(**kw: Any) -> None:
    """Print the VM state (READY, CREATING, PREEMPTED, ... or NOT_FOUND)."""
    state = _ops(kw)[0].state()
    if state is not None:
        click.echo(state)


@tpu.command("logs")
@click.option("--worker", default="0", show_default=True, help="Worker index (or all).")
@click.option("--lines", "-n", default=100, show_default=True, type=int, help="Lines to show.")
@click.option("--run-mode", type=click.Choice(tv.RUN_MODES), help="With --config: that run's log.")
@tpu_options
def logs(worker: str, lines: int, run_mode: str | None, **kw: Any) -> None:
    """Tail the latest run log of a worker."""
    if worker != "all" and not worker.isdigit():
        raise UsageError(f"--worker {worker}: expected an index or 'all'")
    ops, config_path = _ops(kw)
    ops.logs(_tag(config_path, run_mode), worker, lines)


@tpu.command("exit-code")
@click.option("--run-mode", type=click.Choice(tv.RUN_MODES), help="With --config: that run's exit files.")
@tpu_options
def exit_code(run_mode: str | None, **kw: Any) -> None:
    """Print every worker's exit code; fail unless all exist and are 0."""
    ops, config_path = _ops(kw)
    codes = ops.exit_codes(_tag(config_path, run_mode))
    if codes is None:
        return
    for w, code in enumerate(codes):
        click.echo(f"worker {w}: {'missing' if code is None else code}")
    bad = [w for w, c in enumerate(codes) if c != 0]
    if bad:
        workers = ", ".join(map(str, bad))
        raise LaunchError(f"run not finished cleanly on worker(s) {workers}: exit codes {codes}")


@tpu.command("stop")
@click.option("--run-mode", type=click.Choice(tv.RUN_MODES), help="With --config: stop that run.")
@tpu_options
def stop(run_mode: str | None, **kw: Any) -> None:
    """SIGTERM the latest run on all workers (it saves a checkpoint and exits 75); the VM keeps running."""
    ops, config_path = _ops(kw)
    ops.stop(_tag(config_path, run_mode))


@tpu.command("delete")
@tpu_options
def delete(**kw: Any) -> None:
    """Delete the VM (queued provisioning: the queued resource and its node)."""
    _ops(kw)[0].delete()


@tpu.command("supervise", context_settings={"ignore_unknown_options": True})
@click.option("--run-mode", type=click.Choice(tv.RUN_MODES), help="Run mode (default: the config's).")
@click.option("--launch", is_flag=True,
              help="Create (if missing), bootstrap, sync-env and start the run first.")
@click.option("--max-restarts", type=int, help="Sugar for --set max_restarts=...")
@click.option("--poll-interval", type=float, help="Sugar for --set poll_interval_s=...")
@click.argument("overrides", nargs=-1)
@tpu_options
def supervise(run_mode: str | None, launch: bool, max_restarts: int | None, poll_interval: float | None,
              overrides: tuple[str, ...], **kw: Any) -> None:
    """Watch a run to completion; on PREEMPTED: delete, recreate, bootstrap, sync-env and rerun it (the
    rerun resumes from the run's checkpoint store)."""
    ops, config_path = _ops(kw, max_restarts=max_restarts, poll_interval_s=poll_interval)
    argv, tag = _run_argv(config_path, run_mode, overrides)
    restarts = ops.supervise(argv, tag, launch=launch)
    if restarts is not None:
        click.echo(f"run {tag} finished with exit code 0 on all workers after {restarts} restart(s)")


# ------------------------------------------------------------------------------------------------
# sid stub-path
# ------------------------------------------------------------------------------------------------


@click.command("stub-path")
def stub_path() -> None:
    """Print the stubs/ folder: PYTHONPATH=$(sid stub-path) python reference_script.py."""
    from sid_launchers.local import stubs_dir

    click.echo(str(stubs_dir()))


def add_commands(cli: click.Group) -> None:
    """Attach ``tpu`` and ``stub-path`` to a click group (the ``register_commands`` hook body)."""
    cli.add_command(tpu)
    cli.add_command(stub_path)


__all__ = ["add_commands", "load_tpu_config", "stub_path", "tpu"]
