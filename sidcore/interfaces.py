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
quantizer  ``f(cfg)``                                                  `Quantizer`
reward     ``f(cfg)``                                                  `Reward`
=========  ==========================================================  =========================

Parameter-path convention for optimizers: leaves whose path contains ``embed`` or ``lm_head`` are
the token embedding / output head (they include the added SID rows) and must not go to Muon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import attrs

if TYPE_CHECKING:
    import jax
    import numpy as np


@attrs.frozen(kw_only=True)
class SidCatalog:
    """The set of valid items, as token ids, for decoders and metrics.

    Attributes:
        sids: SID strings, one per catalog row (distinct; collisions already merged).
        token_ids: ``[N, D]`` int32 ids of each SID's D level tokens (D = SID depth, any depth). In a
            mixed-depth catalog (e.g. 3 levels plus a 4th dedup token on colliding items only) D is
            the largest depth and shorter rows are right-padded with ``-1``.
        suffix_ids: ids every completed SID must be followed by before EOS (Qwen: ``"\\n"`` -> [198]).
        items_per_sid: SID -> item ids sharing it (collisions; for item-level metrics).
    """

    sids: tuple[str, ...]
    token_ids: "np.ndarray"  # [N, D]
    suffix_ids: tuple[int, ...]
    items_per_sid: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


class Register(Protocol):
    """The callback a ``register_<kind>s`` hook receives; call it once per component.

    ``name`` is snake_case and unique per kind; ``factory`` a callable or a lazy
    ``"package.module:function"`` string; ``config`` a frozen attrs class of the component's options.
    Stores also pass ``schemes``: the URI schemes they serve (``"file"`` = plain local paths), and
    may pass ``detect``: a callable (or lazy ``"module:function"``) ``detect(uri) -> bool`` saying
    that a location holds this store's checkpoints whatever its scheme (``orbax`` folders are plain
    local paths too); the kernel asks detecting stores first when it opens a checkpoint by URI.
    """

    def __call__(self, name: str, factory: Callable[..., Any] | str, *, config: type,
                 summary: str = "", schemes: Sequence[str] = (),
                 detect: Callable[[str], bool] | str | None = None) -> None: ...


class DecodeModel(Protocol):
    """What a decoder may call on the model, inside ``jit``; built by the kernel.

    Every cache leaf has the batch (row) axis first, so beams are reordered with
    ``jax.tree.map(lambda x: x[rows], cache)`` and broadcast with ``jnp.repeat(x, K, axis=0)``.
    Logits are float32 log-space-ready with padded vocabulary rows already set to ``-inf``.
    The kernel's adapter also implements `FusedDecodeModel`; a decoder must check
    `supports_fused_scoring` before using it and fall back to logits otherwise.
    """

    vocab_size: int  # model (possibly padded) vocabulary size = logits' last dim

    def prefill(self, input_ids: "jax.Array", lengths: "jax.Array", cache_len: int) -> tuple["jax.Array", Any]:
        """``input_ids [B, L]`` right-padded, ``lengths [B]`` -> (logits ``[B, V]`` at the last real token, cache)."""

    def step(self, tokens: "jax.Array", cache: Any) -> tuple["jax.Array", Any]:
        """``tokens [B]`` appended to each row -> (logits ``[B, V]``, cache)."""


class FusedDecodeModel(DecodeModel, Protocol):
    """Fused scoring: final hidden states instead of full-vocabulary logits, so a decoder that
    scores only a few candidate tokens per beam never materialises ``[B, V]``."""

    def prefill_hidden(self, input_ids: "jax.Array", lengths: "jax.Array", cache_len: int) -> tuple["jax.Array", Any]:
        """Like `DecodeModel.prefill`, returning the hidden state ``[B, H]`` at the last real token."""

    def step_hidden(self, tokens: "jax.Array", cache: Any) -> tuple["jax.Array", Any]:
        """Like `DecodeModel.step`, returning hidden states ``[B, H]``."""

    def log_normalizer(self, hidden: "jax.Array") -> "jax.Array":
        """``[B]`` log-sum-exp of the logits over the real vocabulary."""

    def log_probs_at(self, hidden: "jax.Array", tokens: "jax.Array", lse: "jax.Array") -> "jax.Array":
        """``[B, M]`` log-probs of the tokens ``[B, M]`` given ``lse`` from `log_normalizer`."""

    def log_probs(self, hidden: "jax.Array") -> "jax.Array":
        """``[B, V]`` full-vocabulary log-probs (for policies that need every token)."""


def supports_fused_scoring(model: Any) -> bool:
    """Whether `model` implements `FusedDecodeModel` (checked at trace time by decoders)."""
    return all(callable(getattr(model, m, None))
               for m in ("prefill_hidden", "step_hidden", "log_normalizer", "log_probs_at", "log_probs"))


class Decoder(Protocol):
    """A beam search. ``decode`` must be traceable by ``jax.jit`` (no host sync per step).

    ``emits_sids`` (optional, default False): True when every returned beam is a catalog path of
    SID level tokens, so the kernel joins the level tokens into the prediction string; otherwise
    the kernel decodes the generated text the way upstream does.

    ``decode_token_logps(model, input_ids, lengths, *, num_beams)`` (optional): ``decode`` plus the
    per-token full-vocabulary log-probs ``[B, K, T]`` of every beam, or None when it cannot give
    them; the RL update then reuses them instead of recomputing the policy's vocabulary pass.
    """

    emits_sids: bool

    def decode(
        self, model: DecodeModel, input_ids: "jax.Array", lengths: "jax.Array", *, num_beams: int
    ) -> tuple["jax.Array", "jax.Array"]:
        """Return ``(tokens [B, K, T] int32, scores [B, K] float32)`` best first; T = generated ids
        (SID levels, then suffix and EOS where applicable; padded with -1)."""

    def max_new_tokens(self) -> int:
        """Upper bound on generated tokens (the kernel sizes the KV cache with it)."""


class Metric(Protocol):
    """Scores ranked string predictions against targets with `calc.py` semantics.

    Returned keys are ``"<family>@<K>"`` (reported per K, e.g. ``hr@10``, ``mrr@10``) or plain names
    (scalars, e.g. ``invalid_prediction_count``); the kernel shows every family in the table,
    ``metrics.jsonl``, W&B and ``sid report``. ``target_kind`` (optional, default ``"sid"``):
    ``"item"`` makes the kernel pass item ids instead of SID strings as targets.
    """

    target_kind: str

    def __call__(
        self, predictions: Sequence[Sequence[str]], targets: Sequence[str], *, catalog: SidCatalog
    ) -> dict[str, float]:
        """Return named values, e.g. ``{"hr@1": .., "hr@10": ..}``."""


def emits_sids(decoder: Any) -> bool:
    """`Decoder.emits_sids` with its default."""
    return bool(getattr(decoder, "emits_sids", False))


def target_kind(metric: Any) -> str:
    """`Metric.target_kind` with its default."""
    return str(getattr(metric, "target_kind", "sid"))


class CheckpointStore(Protocol):
    """Atomic save/restore of checkpoint trees plus JSON metadata by name (``last``, ``best``,
    ``step<N>``); a checkpoint without its commit marker is invisible. The registry picks a store
    for a URI by the schemes each store registered. Every method and attribute the kernel uses is
    here; `sidcore.testing.stores.check_store` checks them.

    A tree is ``{"params": {"a/b/c": array}, "opt_state": <flax state dict>, ...}`` (RL adds
    ``"ref_params"``); arrays are numpy for byte stores and ``jax.Array`` for sharded ones.

    Attributes:
        uri: where the store lives; messages and the CLI name checkpoints ``<uri>#<name>``.
        sharded: ``False`` (byte stores: msgpack, gcs): the kernel gathers the tree onto the host
            and calls `save` on process 0 only. ``True`` (orbax): the kernel calls `save` on *every*
            process with the device arrays, unmoved, and the store writes each process's own shards.
            `delete` is called on process 0 only; `restore`, `names`, `damaged` on every process.
    """

    uri: str
    sharded: bool

    def save(self, name: str, tree: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Write checkpoint `name`, replacing an older one of that name atomically: a crash at any
        moment leaves the previous one intact. May return before the write is durable (async);
        `wait` (or the next `save`) commits it."""

    def wait(self) -> None:
        """Block until every started save is committed (the kernel calls it before it exits, before
        it reads back a checkpoint it wrote, and when preempted). A no-op for synchronous stores."""

    def restore(self, name: str, *, params_only: bool = False,
                shardings: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(tree, meta)``; a damaged checkpoint is a one-line `CheckpointError`. With `params_only`
        the tree holds ``"params"`` only (eval, export, an RL start; a sharded store reads nothing
        else); `shardings` (``{"a/b/c": jax.sharding.Sharding}``) returns those params as
        ``jax.Array`` placed so, on any mesh (a sharded store reads only each process's slices);
        params not named stay numpy."""

    def names(self) -> list[str]:
        """Committed, intact checkpoints."""

    def damaged(self) -> dict[str, str]:
        """``{name: one-line reason}`` of checkpoints whose commit marker exists but which cannot be
        restored (the kernel refuses to train over them or evaluate without them)."""

    def delete(self, name: str) -> None:
        """Remove checkpoint `name` (uncommit first, so a crash never leaves a half-deleted one visible)."""


@attrs.frozen(kw_only=True)
class LaunchStep:
    """One process to run: an argv list (never a shell string), extra env and a description for logs (stdin is always closed)."""

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


# --------------------------------------------------------------------------------------------
# Quantizers (SID construction: item embeddings -> codes; `sid index build`)
# --------------------------------------------------------------------------------------------


class FittedQuantizer(Protocol):
    """A trained residual quantizer with ``L = len(codebook_sizes)`` levels.

    Level ``l`` holds codes ``0 .. codebook_sizes[l] - 1``. ``encode`` is greedy (argmin per level on
    the running residual), so encoding is deterministic and level ``l``'s code depends only on the
    codes before it. ``decode(encode(x))`` is the reconstruction in the input space: for residual
    k-means the sum of the chosen centroids, for an RQ-VAE the decoder applied to that sum in latent
    space. All arrays are host numpy arrays (float32 / int32).

    Attributes:
        codebook_sizes: codes per level.
        fit_codes: ``[N, L]`` codes of the training rows as the quantizer assigned them: equal to
            ``encode(embeddings)`` for greedy quantizers, the size-constrained assignment for
            balanced ones. ``sid index build`` writes these.
    """

    codebook_sizes: tuple[int, ...]
    fit_codes: "np.ndarray"

    def encode(self, x: "np.ndarray") -> "np.ndarray":
        """``x [N, D]`` -> ``codes [N, L]`` int32."""

    def decode(self, codes: "np.ndarray") -> "np.ndarray":
        """``codes [N, L]`` -> ``[N, D]`` float32 reconstruction."""

    def distances(self, x: "np.ndarray", codes: "np.ndarray", level: int) -> "np.ndarray":
        """``[N, codebook_sizes[level]]`` squared distances from each row's residual after the
        earlier levels' ``codes[:, :level]`` to the codewords of ``level``; used by collision
        re-assignment (Sinkhorn on the last level)."""


class Quantizer(Protocol):
    """An untrained quantizer; ``fit`` must be deterministic given ``seed``."""

    def fit(self, embeddings: "np.ndarray", *, seed: int) -> FittedQuantizer:
        """Train on ``embeddings [N, D]`` (one row per item, item-id order)."""


@attrs.frozen(kw_only=True, eq=False)
class RewardGroup:
    """One prompt's G rollouts, as a reward sees them (plain strings and numpy, host side).

    Attributes:
        sample_id: the RL example's id; binds the target (never the prompt text, which collides).
        target_sid: the SID string the prompt should produce.
        completions: the G generated SID strings, rank order (beam 0 = best).
        scores: ``[G]`` float32 sequence log-probs of the completions.
        target_item: the target's item id, when known.
        history_items: the prompt's history as item ids (the CSV's ``history_item_id``, oldest
            first); empty when the prompt has no item history (title -> SID prompts). The
            collaborative-filtering reward (`sasrec`) scores completions given this history.
    """

    sample_id: int
    target_sid: str
    completions: tuple[str, ...]
    scores: "np.ndarray"  # [G] float32
    target_item: str | None = None
    history_items: tuple[int, ...] = ()


class Reward(Protocol):
    """Maps one `RewardGroup` to ``[G]`` float32 rewards (one per completion, same order)."""

    def __call__(self, group: RewardGroup) -> "np.ndarray": ...
