"""The contracts between the kernel and component plugins (one Protocol per kind).

Factories are called by the kernel with the component's attrs config as the first argument and
kernel-owned context as keyword arguments:

=========  ==========================================================  =========================
kind       factory call                                                returns
=========  ==========================================================  =========================
optimizer  ``f(cfg, *, learning_rate, make_schedule)``                 ``optax.GradientTransformation``
decoder    ``f(cfg, *, catalog, eos_id)``                              `Decoder`
metric     ``f(cfg)``                                                  `Metric`
store      ``f(cfg, *, uri)``                                          `CheckpointStore`
launcher   ``f(cfg)``                                                  `Launcher`
reward     ``f(cfg)``                                                  `Reward`
=========  ==========================================================  =========================

Parameter-path convention for optimizers: leaves whose path contains ``embed`` or ``lm_head`` are
the token embedding / output head (they include the added SID rows) and must not go to Muon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import attrs

if TYPE_CHECKING:
    import jax
    import numpy as np


@attrs.frozen(kw_only=True)
class SidCatalog:
    """The set of valid items, as token ids, for decoders and metrics.

    Attributes:
        sids: SID strings, one per catalog row (distinct; collisions already merged).
        token_ids: ``[N, D]`` int32 ids of each SID's D level tokens (D = SID depth, any depth).
        suffix_ids: ids every completed SID must be followed by before EOS (Qwen: ``"\\n"`` -> [198]).
        items_per_sid: SID -> item ids sharing it (collisions; for item-level metrics).
    """

    sids: tuple[str, ...]
    token_ids: "np.ndarray"  # [N, D]
    suffix_ids: tuple[int, ...]
    items_per_sid: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


class DecodeModel(Protocol):
    """What a decoder may call on the model, inside ``jit``; built by the kernel.

    Every cache leaf has the batch (row) axis first, so beams are reordered with
    ``jax.tree.map(lambda x: x[rows], cache)`` and broadcast with ``jnp.repeat(x, K, axis=0)``.
    Logits are float32 log-space-ready with padded vocabulary rows already set to ``-inf``.

    Optional fused-scoring API (the kernel's adapter has it; decoders must fall back without it):
    ``prefill_hidden``/``step_hidden`` return final hidden states ``[B, H]`` instead of logits,
    ``log_normalizer(h) -> [B]`` is the log-sum-exp over the real vocabulary and
    ``log_probs_at(h, tokens [B, M], lse) -> [B, M]`` the log-probs of selected tokens.
    """

    vocab_size: int  # model (possibly padded) vocabulary size = logits' last dim

    def prefill(self, input_ids: "jax.Array", lengths: "jax.Array", cache_len: int) -> tuple["jax.Array", Any]:
        """``input_ids [B, L]`` right-padded, ``lengths [B]`` -> (logits ``[B, V]`` at the last real token, cache)."""

    def step(self, tokens: "jax.Array", cache: Any) -> tuple["jax.Array", Any]:
        """``tokens [B]`` appended to each row -> (logits ``[B, V]``, cache)."""


class Decoder(Protocol):
    """A beam search. ``decode`` must be traceable by ``jax.jit`` (no host sync per step)."""

    def decode(
        self, model: DecodeModel, input_ids: "jax.Array", lengths: "jax.Array", *, num_beams: int
    ) -> tuple["jax.Array", "jax.Array"]:
        """Return ``(tokens [B, K, T] int32, scores [B, K] float32)`` best first; T = generated ids
        (SID levels, then suffix and EOS where applicable; padded with -1)."""

    def max_new_tokens(self) -> int:
        """Upper bound on generated tokens (the kernel sizes the KV cache with it)."""


class Metric(Protocol):
    """Scores ranked string predictions against targets with `calc.py` semantics."""

    def __call__(
        self, predictions: Sequence[Sequence[str]], targets: Sequence[str], *, catalog: SidCatalog
    ) -> dict[str, float]:
        """Return named values, e.g. ``{"hr@1": .., "hr@10": ..}``."""


class CheckpointStore(Protocol):
    """Atomic save/restore of pure-dict pytrees of numpy arrays plus JSON metadata by name
    (``last``, ``best``, ``step<N>``); a checkpoint without its metadata marker is invisible."""

    uri: str

    def save(self, name: str, tree: Mapping[str, Any], meta: Mapping[str, Any]) -> None: ...

    def restore(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def names(self) -> list[str]: ...

    def delete(self, name: str) -> None: ...


@attrs.frozen(kw_only=True)
class LaunchStep:
    """One process to run: an argv list (never a shell string), extra env, optional stdin text."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = attrs.field(factory=dict)
    description: str = ""
    check: bool = True


@attrs.frozen(kw_only=True)
class LaunchPlan:
    """What a launcher wants done; the kernel's executor runs `steps` in order (or all at once
    when `parallel`), or prints them for ``--dry-run``. ``in_process=True`` (and no steps) means
    "run the job in this very process" (the ``local`` launcher)."""

    steps: tuple[LaunchStep, ...] = ()
    parallel: bool = False
    in_process: bool = False


class Launcher(Protocol):
    def plan(self, request: Mapping[str, Any]) -> LaunchPlan:
        """Turn a run request into a `LaunchPlan`.

        ``request`` keys: ``argv`` (the ``sid run`` arguments to replay in child processes, with the
        launcher selection removed), ``config_path``, ``run_mode``, ``output_dir``.
        """


# Environment contract between multi-process launchers and the kernel's jax.distributed setup.
ENV_COORDINATOR = "SID_COORDINATOR_ADDRESS"  # host:port of process 0
ENV_NUM_PROCESSES = "SID_NUM_PROCESSES"
ENV_PROCESS_ID = "SID_PROCESS_ID"


@attrs.frozen(kw_only=True, eq=False)
class RewardGroup:
    """One prompt's G rollouts, as a reward sees them (plain strings and numpy, host side).

    Attributes:
        sample_id: the RL example's id; binds the target (never the prompt text, which collides).
        target_sid: the SID string the prompt should produce.
        completions: the G generated SID strings, rank order (beam 0 = best).
        scores: ``[G]`` float32 sequence log-probs of the completions.
        target_item: the target's item id, when known.
    """

    sample_id: int
    target_sid: str
    completions: tuple[str, ...]
    scores: "np.ndarray"  # [G] float32
    target_item: str | None = None


class Reward(Protocol):
    """Maps one `RewardGroup` to ``[G]`` float32 rewards (one per completion, same order)."""

    def __call__(self, group: RewardGroup) -> "np.ndarray": ...
