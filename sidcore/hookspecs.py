"""Hook specifications of the `sidcore` plugin system.

A plugin is a module (found through the `sidcore` entry-point group) with `@hookimpl` functions.
Each `register_<kind>s(register)` hook receives a `register` callback and calls it once per
component::

    register(name, factory, *, config=ConfigClass, summary="one line")

`name` is snake_case and unique per kind across all plugins; `factory` is a callable or a lazy
``"package.module:function"`` string (resolved only when the component is selected, so listing
plugins never imports jax); `config` is a frozen attrs class holding the component's options.
Factory call shapes per kind are documented in `sidcore.interfaces`.

Every component hook below is called once per process, right after the plugins are loaded and
before config resolution, once per plugin (so one plugin's failure stays its own). If a hook
implementation raises, the kernel marks that plugin ``error`` (one warning on stderr) and keeps
the other plugins; under ``SID_STRICT_PLUGINS=1`` the error is fatal. Each spec's docstring says
what its factories are called with and must return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from sidcore.interfaces import Register

if TYPE_CHECKING:
    import click

hookspec = pluggy.HookspecMarker("sidcore")

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
    optax.GradientTransformation``; ``make_schedule(peak)`` gives the run's schedule shape. The
    kernel chains global-norm clipping in front; parameters whose path contains ``embed`` or
    ``lm_head`` are the embedding and head (SID rows included).

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_decoders(register: Register) -> None:
    """Register decoder components (kind ``decoder``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg, *, catalog, eos_id) -> Decoder``
    (`sidcore.interfaces.Decoder`): a jittable beam search over a model's prefill/step functions,
    ``decode(model, input_ids, lengths, *, num_beams) -> (tokens [B,K,T], scores [B,K])`` plus
    ``max_new_tokens()``; optional ``emits_sids = True``.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register metric components (kind ``metric``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg) -> Metric``; a metric maps ranked
    predictions, targets and the catalog to named floats (``{"hr@10": 0.15}``; see
    `sidcore.interfaces.Metric` for key names and the optional ``target_kind``).

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_checkpoint_stores(register: Register) -> None:
    """Register checkpoint store components (kind ``store``).

    Args:
        register: ``register(name, factory, *, config, summary, schemes)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg, *, uri) -> CheckpointStore``
    (`sidcore.interfaces.CheckpointStore`: ``uri``, ``sharded``, ``save``, ``wait``, ``restore``,
    ``names``, ``damaged``, ``delete``) that save and restore checkpoint trees atomically (a
    commit marker last). ``schemes`` are the URI schemes the store serves (``"file"`` for plain
    local paths, ``"gs"`` for ``gs://...``); the kernel resolves every URI to the one store that
    claims its scheme.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_launchers(register: Register) -> None:
    """Register launcher components (kind ``launcher``).

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg) -> Launcher`` whose ``plan(request)``
    returns a `LaunchPlan`: in process, or argv steps the kernel executes (plugins never spawn
    processes; ``--dry-run`` prints the plan). Conformance: `sidcore.testing.launchers`.

    Errors: an exception marks this plugin ``error``; other plugins are unaffected.
    """


@hookspec
def register_quantizers(register: Register) -> None:
    """Register quantizer components (kind ``quantizer``): item embeddings -> semantic IDs.

    Args:
        register: ``register(name, factory, *, config, summary)``.

    When called: once per process, right after plugins are loaded, before config resolution.

    What to register: factories ``factory(cfg) -> Quantizer`` (see `sidcore.interfaces.Quantizer`)
    whose ``fit(embeddings [N, D], *, seed)`` returns a `FittedQuantizer` with ``codebook_sizes``,
    ``encode(x) -> codes [N, L] int32``, ``decode(codes) -> [N, D]`` and ``distances(x, level)``.
    ``sid index build --quantizer NAME`` selects one; collisions are handled by the command, not
    by the quantizer.

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
    the G completions best first and their scores, the target item and the prompt's history item
    ids when known) to ``[G]`` float32 rewards.

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

    When called: once, when the ``sid`` CLI starts, after plugins are loaded (per plugin, like the
    component hooks). A command gets the loaded plugins from click's context:
    ``click.get_current_context().obj.plugins`` (a `sidcore.plugins.Plugins`).

    What to register: extra commands (e.g. the ``sid tpu ...`` group of the launcher plugin).

    Errors: an exception marks this plugin ``error`` (fatal under ``SID_STRICT_PLUGINS=1``); the
    built-in commands still work.
    """


KINDS: dict[str, str] = {
    "optimizer": "register_optimizers",
    "decoder": "register_decoders",
    "metric": "register_metrics",
    "store": "register_checkpoint_stores",
    "launcher": "register_launchers",
    "quantizer": "register_quantizers",
    "reward": "register_rewards",
}
"""Component kind -> the hook that registers it."""

