"""The ``rl`` config section (attrs; no jax). Defaults are upstream MiniOneRec's ``rl.sh`` values
unless a comment says otherwise; upstream quirks are reproducible by option (docs/rl.md)."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, validators as v

__all__ = ["RLConfig", "RewardSpec"]


def _help(text: str, default: Any, **kw: Any) -> Any:
    if callable(default) and not isinstance(default, (int, float, str, bool)):
        return field(factory=default, metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


def _one_of(*choices: str) -> Any:
    return v.in_(choices)


@attrs.frozen(kw_only=True)
class RewardSpec:
    """One selected reward component and its weight in the summed reward."""

    name: str = field(validator=v.matches_re(r"^[a-z][a-z0-9_]*$"))
    weight: float = field(default=1.0, converter=float)
    options: dict[str, Any] = field(factory=dict)


def _rewards(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must select at least one reward")
    names = [r.name for r in value]
    if len(set(names)) != len(names):
        raise ValueError(f"{attribute.name} selects a reward twice: {names}")


def _reward_list(value: Any) -> list[RewardSpec]:
    return [r if isinstance(r, RewardSpec) else RewardSpec(**r) for r in value]


@attrs.frozen(kw_only=True)
class RLConfig:
    """GRPO with trie-constrained rollouts (issue 13)."""

    # -- groups and batch
    num_generations: int = _help("G: rollouts per prompt (beams or samples).", 16, validator=v.ge(1))
    batch_size: int = _help("Completion rows per optimizer step (prompts x G); must be a multiple of "
                            "num_generations (upstream: 64 per device x 2 accumulation x 8 GPUs = 1024).", 64,
                            validator=v.ge(1))
    rollout: str = _help("beam: the trie decoder's G beams, best first (upstream); sample: G trie-constrained "
                         "samples sorted by log-prob.", "beam", validator=_one_of("beam", "sample"))
    temperature: float = _help("Rollout temperature: rollout=sample draws from exp(logp / T); rollout=beam "
                               "divides the beam scores by T (upstream's TemperatureLogitsWarper runs on both; "
                               "the beams and their order do not change).", 1.0, validator=v.gt(0))
    sample_order: str = _help("rollout=sample: logprob (sid: samples sorted best first, so rank rewards see "
                              "the likeliest first) or generation (upstream: draw order).", "logprob",
                              validator=_one_of("logprob", "generation"))
    add_gt: bool = _help("Replace the last completion of every group by the target's catalog path (upstream "
                         "add_gt).", False)
    dynamic_sampling: bool = _help("rollout=sample only: draw int(1.5 G) samples per prompt and keep G: the "
                                   "target's copies first (at most G), then the most frequent other items "
                                   "(upstream dynamic_sampling).", False)
    gradient_accumulation_steps: int = _help(
        "Split each step's prompts into this many micro-batches for the update forward/backward and sum "
        "their gradients before one optimizer update (memory; same loss and gradient). Must divide "
        "batch_size / num_generations.", 1, validator=v.ge(1))
    # -- rewards and advantages
    rewards: list[RewardSpec] = _help(
        "Selected reward components with weights (upstream reward_type=ranking = rule + ranking).",
        lambda: [RewardSpec(name="rule"), RewardSpec(name="ranking")], converter=_reward_list, validator=_rewards)
    advantage: str = _help("grpo (upstream), rloo or drgrpo.", "grpo", validator=_one_of("grpo", "rloo", "drgrpo"))
    advantage_eps: float = _help("grpo: A = (r - mean) / (std + eps); upstream 1e-4, Tunix 1e-6.", 1e-4,
                                 validator=v.ge(0))
    advantage_ddof: int = _help("grpo: degrees of freedom of the group std (1 = torch's unbiased std).", 1,
                                validator=v.ge(0))
    # -- loss
    beta: float = _help("KL coefficient (k3 KL to the reference); 0 keeps no reference model.", 1e-3,
                        validator=v.ge(0))
    epsilon: float = _help("Clip range of the multi-iteration ratio (unused when num_iterations=1).", 0.2,
                           validator=v.gt(0))
    epsilon_high: float | None = _help("Upper clip range (null: epsilon).", None)
    num_iterations: int = _help("Updates per rollout batch; > 1 uses the clipped ratio against the "
                                "rollout policy's log-probs (upstream: 1).", 1, validator=v.ge(1))
    loss_aggregation: str = _help("sequence-mean-token-mean (upstream), dapo (global token mean) or gspo "
                                  "(sequence-level ratio).", "sequence-mean-token-mean",
                                  validator=_one_of("sequence-mean-token-mean", "dapo", "gspo"))
    fused_logprobs: bool = _help("Per-token log-probs through a chunked log-sum-exp (no [rows, T, V] array).",
                                 True)
    shared_prefix: bool = _help("Update forward with each prompt computed once for its G completions (one "
                                "tree-masked row per prompt); false: G full prompt + completion rows (upstream).",
                                True)
    # -- reference model
    sync_ref_model: bool = _help("Mix the policy into the reference every ref_sync_steps (TRL's "
                                 "SyncRefModelCallback; default off = rl.py's function default and TRL's; "
                                 "rl.sh passes True).", False)
    ref_sync_steps: int = _help("Optimizer steps between reference syncs (TRL default).", 512, validator=v.ge(1))
    ref_mixup_alpha: float = _help("ref <- alpha * theta + (1 - alpha) * ref (TRL default).", 0.6,
                                   validator=[v.ge(0), v.le(1)])
    # -- optimisation
    learning_rate: float = _help("Peak learning rate.", 1e-5, validator=v.gt(0))
    lr_schedule: str = _help("warmup_cosine (upstream), warmup_linear or constant.", "warmup_cosine",
                             validator=_one_of("warmup_cosine", "warmup_linear", "constant"))
    warmup_ratio: float = _help("Warmup steps as a share of all steps.", 0.03, validator=[v.ge(0), v.le(1)])
    max_grad_norm: float = _help("Global-norm gradient clipping.", 0.3, validator=v.gt(0))
    num_train_epochs: float = _help("Epochs over the RL prompts (used when max_steps <= 0).", 2.0,
                                    validator=v.gt(0))
    max_steps: int = _help("Optimizer steps (> 0 overrides num_train_epochs).", -1)
    # -- data (upstream rl.py)
    tasks: list[str] = _help("RL prompt sources: sid_history, item_to_sid, title_history.",
                             lambda: ["sid_history", "item_to_sid", "title_history"])
    title_history_sample: int = _help("Train rows sampled for title_history (upstream sample=10000).", 10000)
    title_history_seed: int | None = _help("Seed of the title_history sample (upstream: 0, RLSeqTitle2SidDataset's "
                                           "default, since rl.py passes none); null: the run seed.", 0)
    item_to_sid_upstream_leak: bool = _help("Reproduce upstream's RLTitle2SidDataset prompts, which end with "
                                            "'### Response:\\n<target SID>' (the answer in the prompt); "
                                            "default false: the prompt ends at the response marker.", False)
    prompt_preamble: bool = _help("Start RL prompts with the SFT instruction preamble (false: upstream's bare "
                                  "'### User Input:' prompt).", True)
    bind_targets: str = _help("sample_id (each prompt its own target) or prompt (upstream's one merged "
                              "history -> target map over all RL tasks, then the valid split: identical "
                              "history strings share the last written target).", "sample_id",
                              validator=_one_of("sample_id", "prompt"))
    max_prompt_len: int = _help("Prompts are left-truncated to this many tokens (upstream GRPOConfig "
                                "max_prompt_length 512; sid's default keeps every prompt whole).", 2560,
                                validator=v.ge(8))
    # -- RL eval on the valid split (upstream eval_step)
    eval_steps: float = _help("Rollouts, rewards and GRPO loss (no update) on the valid split every N steps; a "
                              "value < 1 is a share of all steps (upstream eval_step=0.0999); 0: never.", 0.0,
                              validator=v.ge(0))
    eval_max_prompts: int = _help("Valid prompts per RL eval (0: the whole split, upstream).", 0, validator=v.ge(0))
    prompt_bucket: int = _help("Prompt batches are padded to a multiple of this length (fewer recompiles).", 64,
                               validator=v.ge(1))
    # -- bookkeeping
    logging_steps: int = _help("Write metrics every N steps (and at the first and last).", 1, validator=v.ge(1))
    save_steps: int = _help("Write a step<N> checkpoint every N steps (0: only last).", 0, validator=v.ge(0))
    save_total_limit: int = _help("Keep at most this many step<N> checkpoints (0: all).", 2, validator=v.ge(0))

    def __attrs_post_init__(self) -> None:
        if self.dynamic_sampling and self.rollout != "sample":
            raise ValueError("rl.dynamic_sampling needs rl.rollout=sample (upstream uses it only without beam_search)")
