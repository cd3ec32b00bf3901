"""Hook specifications of the `sidcore` plugin system.

A plugin is a module (found through the `sidcore` entry-point group) with `@hookimpl` functions.
Each `register_<kind>s(register)` hook receives a `register` callback and calls it once per
component::

    register(name, factory, *, config=ConfigClass, summary="one line")

`name` is snake_case and unique per kind across all plugins; `factory` is a callable or a lazy
``"package.module:function"`` string (resolved only when the component is selected, so listing
plugins never imports jax); `config` is a frozen attrs class holding the component's options.
Factory call shapes per kind are documented in `sidcore.interfaces`.

Errors: if a hook implementation raises, the kernel marks that plugin `error` (one warning on
stderr) and keeps the other plugins; under `SID_STRICT_PLUGINS=1` the error is fatal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

hookspec = pluggy.HookspecMarker("sidcore")

Register = Callable[..., None]

# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizer components (kind ``optimizer``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg, *, learning_rate, make_schedule) ->
    optax.GradientTransformation``; the kernel chains global-norm clipping in front.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_decoders(register: Register) -> None:
    """Register decoder components (kind ``decoder``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg, *, catalog, eos_id) -> Decoder`` (see
    `sidcore.interfaces.Decoder`): a jittable beam search over a model's prefill/step functions.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register metric components (kind ``metric``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg) -> Metric``; a metric maps ranked predictions,
    targets and the catalog to named floats (e.g. ``{"hr@10": 0.15}``).

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_checkpoint_stores(register: Register) -> None:
    """Register checkpoint store components (kind ``store``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg, *, uri) -> CheckpointStore`` that save and
    restore pure-dict pytrees of numpy arrays atomically (metadata last, as commit marker).

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_launchers(register: Register) -> None:
    """Register launcher components (kind ``launcher``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg) -> Launcher`` whose ``plan(request)`` returns a
    `LaunchPlan` of argv lists; the kernel executes plans, plugins never spawn processes.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_rewards(register: Register) -> None:
    """Register RL reward components (kind ``reward``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg) -> Reward`` (see `sidcore.interfaces.Reward`): a
    host-side function from one prompt's group of G rollouts (`RewardGroup`: sample id, target SID,
    the G completions best first and their scores) to ``[G]`` float32 rewards.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add click commands or groups to the ``sid`` command line.

    Args:
        cli: the top-level ``sid`` click group; call ``cli.add_command(...)`` or decorate.

    When called: once, when the ``sid`` CLI starts, after plugins are loaded.

    What to register: extra commands (e.g. the ``sid tpu ...`` group of the launcher plugin).

    Errors: an exception marks this plugin ``error``; the built-in commands still work.
    """


KINDS: dict[str, str] = {
    "optimizer": "register_optimizers",
    "decoder": "register_decoders",
    "metric": "register_metrics",
    "store": "register_checkpoint_stores",
    "launcher": "register_launchers",
    "reward": "register_rewards",
}
"""Component kind -> the hook that registers it."""

