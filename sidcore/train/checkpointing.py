"""Checkpoint bookkeeping the SFT and RL trainers share, written once.

- which of a run's own checkpoints a rerun resumes (``last`` and the newest ``step<N>``, by
  recorded step), refusing to train over a damaged one;
- whether that checkpoint belongs to *this* run: same stage (``sft`` / ``rl``) and the same
  settings fingerprint (`sidcore.run.identity`), else a one-line `CheckpointError` naming each
  differing key with both values and the two ways out;
- saving with the run's identity in the metadata, and rotating ``step<N>`` snapshots.

The job calls `own_resume` before it writes anything, so a refused resume leaves the run folder
as it was (docs/reliability.md, "Run identity").
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Mapping

import attrs
import jax

from sidcore.errors import CheckpointError

log = logging.getLogger(__name__)

_SNAPSHOT = re.compile(r"^step(\d+)$")


def is_snapshot(name: str) -> bool:
    return _SNAPSHOT.match(name) is not None


def snapshot_name(step: int) -> str:
    return f"step{step}"


def snapshots(names: list[str]) -> list[str]:
    """``step<N>`` names, oldest first."""
    return sorted((n for n in names if is_snapshot(n)), key=lambda n: int(n[4:]))


@attrs.frozen(kw_only=True)
class Resumed:
    """A restored own checkpoint: its name, tree, metadata and ``uri:name`` for messages."""

    name: str
    tree: dict[str, Any]
    meta: dict[str, Any]
    source: str

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def resume_candidates(store: Any, resume_fallback: bool) -> list[str]:
    """The run's own checkpoints a rerun resumes from (``last`` and the newest ``step<N>``).

    A damaged ``last`` / ``step<N>`` is a `CheckpointError` (training would overwrite it) unless
    ``train.resume_fallback`` is set.
    """
    all_names = store.names()
    damaged = {n: why for n, why in store.damaged().items() if n == "last" or is_snapshot(n)}
    names = (["last"] if "last" in all_names else []) + snapshots(all_names)[-1:]
    if damaged:
        name, why = sorted(damaged.items())[0]
        if not resume_fallback:
            instead = f"'{names[0]}'" if names else "a fresh start"
            raise CheckpointError(
                f"checkpoint '{name}' of {store.uri} is damaged ({why}); not training over it. Move it "
                f"away, or set train.resume_fallback=true to resume from {instead} instead")
        log.warning("checkpoint '%s' is damaged (%s); train.resume_fallback: resuming from %s", name, why,
                    names[0] if names else "scratch")
    return names


def newest_own(store: Any, resume_fallback: bool) -> Resumed | None:
    """Restore (checksum-verified) the newest of `resume_candidates`, or None for a fresh run."""
    newest: Resumed | None = None
    for name in resume_candidates(store, resume_fallback):
        tree, meta = store.restore(name)
        if newest is None or int(meta.get("step", -1)) > int(newest.meta.get("step", -1)):
            newest = Resumed(name=name, tree=tree, meta=dict(meta), source=f"{store.uri}#{name}")
    return newest


def normalise(settings: Mapping[str, Any]) -> dict[str, Any]:
    """JSON round trip, so settings compare equal to what a checkpoint's record gives back."""
    return json.loads(json.dumps(dict(settings), sort_keys=True, default=str))


def differing(recorded: Mapping[str, Any], now: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Keys whose values differ between a checkpoint's recorded settings and this run's."""
    keys = sorted((set(recorded) | set(now)) - set(ignore), key=lambda k: (not k.endswith(".name"), k))
    return [k for k in keys if recorded.get(k, "<unset>") != now.get(k, "<unset>")]


def describe(keys: list[str], recorded: Mapping[str, Any], now: Mapping[str, Any], limit: int = 4) -> str:
    shown = "; ".join(f"{k}: {json.dumps(recorded.get(k, '<unset>'))} there, {json.dumps(now.get(k, '<unset>'))} now"
                      for k in keys[:limit])
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return shown + more


def check_same_run(resumed: Resumed, *, stage: str, settings: Mapping[str, Any]) -> None:
    """Refuse to resume a checkpoint of another stage or trained with other trajectory settings."""
    got = str(resumed.meta.get("stage", "sft"))
    if got != stage:
        raise CheckpointError(
            f"{resumed.source} is an {got.upper()} checkpoint and this is an {stage.upper()} run: not resuming it. "
            f"Use another output_dir (and checkpoint_uri), or train.resume_from_checkpoint={resumed.source} to "
            "start from its weights")
    now = normalise(settings)
    recorded = resumed.meta.get("settings")
    if recorded is None:  # written before sid recorded settings: compare the few keys its record has
        legacy = {"seed": now.get("seed"), "optimizer": now.get("optimizer.name")}
        recorded = {k: resumed.meta[k] for k in legacy if k in resumed.meta}
        now = {k: legacy[k] for k in recorded}
    keys = differing(recorded, now)
    if keys:
        raise CheckpointError(
            f"{resumed.source} was trained with other settings ({describe(keys, recorded, now)}): not resuming it. "
            f"Use another output_dir (and checkpoint_uri) for the new settings, or "
            f"train.resume_from_checkpoint={resumed.source} to start from its weights")


def own_resume(store: Any, *, resume_fallback: bool, stage: str, settings: Mapping[str, Any]) -> Resumed | None:
    """The run's own checkpoint to resume (restored and checked), or None: called before any write."""
    if store is None:
        return None
    resumed = newest_own(store, resume_fallback)
    if resumed is not None:
        check_same_run(resumed, stage=stage, settings=settings)
    return resumed


def save_state(store: Any, name: str, params: Any, opt_state: Any, meta: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> None:
    """Save a training state the way the store takes it (`CheckpointStore.sharded`).

    A byte store gets the tree gathered onto the host (every process joins the gather) and is
    called on process 0 only; a sharded store is called on every process with the device arrays as
    they are, and writes each process's own shards (no gather, no host copy of the whole state).
    `extra` holds further param-shaped trees (RL's ``ref_params``), flattened like ``params``.
    """
    from flax import serialization

    from sidcore.model.hf_params import flatten_params
    from sidcore.train import state as ckpt_state

    if store is None:
        return
    if store.sharded:
        tree = {"params": flatten_params(params), "opt_state": serialization.to_state_dict(opt_state)}
        tree.update({k: flatten_params(v) for k, v in (extra or {}).items()})
        store.save(name, tree, meta)
        return
    tree = ckpt_state.to_tree(params, opt_state)
    tree.update({k: flatten_params(ckpt_state.host(v)) for k, v in (extra or {}).items()})
    if jax.process_index() == 0:
        store.save(name, tree, meta)


def finish(store: Any) -> None:
    """Wait until every started save is committed (async stores); before exit or a read-back."""
    if store is not None:
        store.wait()


def rotate(store: Any, limit: int) -> None:
    """Keep the newest `limit` ``step<N>`` snapshots (0: keep all)."""
    if store is None or not limit or jax.process_index() != 0:
        return
    for name in snapshots(store.names())[:-limit]:
        store.delete(name)


def nothing_left(step: int, total: int, source: str) -> None:
    """Say it when a resumed checkpoint is already at the end of training."""
    if step >= total:
        log.warning("nothing left to train (checkpoint %s at step %d of %d)", source, step, total)
