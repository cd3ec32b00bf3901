"""The run configuration as frozen attrs classes (no jax imports here).

Key names follow the reference MiniOneRec/MLLM-JAX schema (``base_model``, ``output_dir``,
``seed``, ``jax.*``, ``data.*``, ``tasks.*``, ``train.*``, ``eval.*``, ``wandb.*``) so users of the
reference find their way; component choices live in one section per kind (``optimizer``,
``decoder``, ``store``, ``launcher``: ``{name: ..., <options>}``; ``metrics``: a list).
Every field carries ``metadata["help"]``, printed by ``sid config show --help-keys``.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, validators as v

from sidcore.rl.config import RLConfig  # attrs only, no jax


def h(text: str, default: Any = attrs.NOTHING, **kw: Any) -> Any:
    """An attrs field with help text."""
    kw.setdefault("metadata", {})["help"] = text
    if default is attrs.NOTHING:
        return field(**kw)
    if isinstance(default, (list, dict)):
        return field(factory=lambda d=default: type(d)(d), **kw)  # type: ignore[misc]
    return field(default=default, **kw)


DTYPES = ("float32", "bfloat16", "float16")


@attrs.frozen(kw_only=True)
class ModelConfig:
    preset: str | None = h("Built-in architecture preset used when base_model is empty or train_from_scratch "
                           "(tiny, qwen2_5_0_5b, qwen2_5_1_5b).", None)
    overrides: dict[str, Any] = h("HF-config attribute overrides applied to the preset (e.g. hidden_size).", {})
    vocab_pad_multiple: int = h("Pad the model vocabulary to a multiple of this (0: fsdp*tp of the mesh).", 0,
                                validator=v.ge(0))
    new_token_init: str = h("Init of added SID rows: mean (transformers mean-resizing) or normal (N(0, 0.02)).",
                            "mean", validator=v.in_(("mean", "normal")))
    remat: bool = h("Rematerialize each decoder layer in the backward pass.", False)
    attention: str = h("Full-sequence attention kernel: auto (cudnn on an NVIDIA GPU with bfloat16/float16 "
                        "compute, else xla), xla (einsum + float32 softmax), cudnn (fused flash attention).",
                        "auto", validator=v.in_(("auto", "xla", "cudnn")))


@attrs.frozen(kw_only=True)
class JaxConfig:
    mesh_shape: str = h('Device mesh: "auto", "dp,fsdp,tp" (one dim may be -1) or "dp:a,fsdp:b,tp:c".', "auto")
    param_dtype: str = h("dtype parameters are stored in.", "float32", validator=v.in_(DTYPES))
    compute_dtype: str = h("dtype of matmuls/activations (softmax and loss are always float32).", "float32",
                           validator=v.in_(DTYPES))
    max_cache_length: int = h("KV-cache length for decoding (0: prompt bucket + generated tokens).", 0,
                              validator=v.ge(0))
    distributed: str = h("jax.distributed.initialize: auto (when SID_/launcher env says so), on, off.", "auto",
                         validator=v.in_(("auto", "on", "off")))
    compile_cache: str = h("Persistent XLA compilation cache: auto (<user cache>/jax: $SID_CACHE_DIR, "
                           "$XDG_CACHE_HOME/sid or ~/.cache/sid), off, or a folder; entries are keyed by "
                           "jax version and device.", "auto")


@attrs.frozen(kw_only=True)
class DataConfig:
    data_dir: str | None = h('MiniOneRec "data/Amazon" folder; fills the six file paths from `category` '
                             '("bundled" = the 300-row sample shipped with sid; "bundled-full" = the shipped '
                             'full Industrial valid/test splits).', None)
    category: str = h("Amazon category name (Industrial_and_Scientific, Office_Products, ...).",
                      "Industrial_and_Scientific")
    train_file: str | None = h("Training CSV (upstream train split; on this data: valid).", None)
    eval_file: str | None = h("Validation CSV (validation loss / best checkpoint).", None)
    test_file: str | None = h("Test CSV (decoding eval).", None)
    info_file: str | None = h("Catalog: <sid>\\t<title>\\t<item_id> per line (valid SIDs, trie).", None)
    sid_index_path: str | None = h("index.json: item_id -> SID level tokens.", None)
    item_meta_path: str | None = h("item.json: item_id -> {title, description, brand, categories}.", None)
    tokenizer: str | None = h('Tokenizer folder or hub id (default: base_model; "bundled" = Qwen2.5 base).', None)
    max_len: int = h("Training sequence cutoff (left truncation, like upstream cutoff_len).", 512, validator=v.gt(0))
    eval_max_len: int = h("Eval prompt cutoff (left truncation; upstream's EvalSidDataset test mode never "
                          "truncates, and eval prompts are ~100 tokens).", 2560, validator=v.gt(0))
    padding_side: str = h("Padding side of batches (the mask makes both exact).", "right",
                          validator=v.in_(("left", "right")))
    pad_policy: str = h("Batch shapes: fixed (max_len), buckets, max (per batch), pack (sequence packing).",
                        "pack", validator=v.in_(("fixed", "buckets", "max", "pack")))
    pad_buckets: list[int] = h("Bucket lengths for pad_policy=buckets (multiples of pad_to_multiple_of).",
                               [64, 128, 256, 512])
    pad_to_multiple_of: int = h("Round padded lengths up to a multiple of this.", 8, validator=v.gt(0))
    pack_rows_multiple: int = h("pad_policy=pack: round a micro-batch's packed rows up to a multiple of this "
                                "(0: replicas x a power of two, the fewest compiled shapes but up to 2x padding "
                                "rows; 8: a few % padding rows and a few more shapes).", 0, validator=v.ge(0))
    sample_train: int = h("Random subset size per training task (<=0: all rows).", -1)
    sample_eval: int = h("Random subset of validation rows (<=0: all).", -1)
    sample_test: int = h("Random subset of test rows (<=0: all).", -1)
    skip_empty_history: bool = h("Drop rows with an empty history (reference port) instead of keeping them.", False)
    train_prefixes: bool = h("Also train on every next-item prefix of each training row's history (what upstream's "
                             "train split holds; docs/data.md).", False)
    train_test_histories: bool = h("Also train on the next-item prefixes of each test user's items before their "
                                   "first test target (leak-free; needs eval.split=test).", False)


@attrs.frozen(kw_only=True)
class TasksConfig:
    sid_next_item: bool = h("Task 1: history SIDs -> next SID.", True)
    sid_item_alignment: bool = h("Task 2: SID <-> title alignment.", True)
    fusion_seq_rec: bool = h("Task 3: history SIDs -> next title.", True)
    title_next_item: bool = h("Task 4 (SFTData): history titles -> next title.", False)
    title_history_to_sid: bool = h("Task 5: history titles -> next SID.", False)
    sid_item_alignment_upstream_leak: bool = h(
        "Reproduce upstream's alignment bug (answer also inside the prompt). Off = fixed.", False)


@attrs.frozen(kw_only=True)
class TrainConfig:
    per_device_train_batch_size: int = h("Micro-batch rows per data replica (dp*fsdp).", 1, validator=v.gt(0))
    per_device_eval_batch_size: int = h("Validation-loss rows per data replica.", 1, validator=v.gt(0))
    global_batch_size: int = h("Effective batch (>0 derives gradient accumulation; must divide exactly).", 0,
                               validator=v.ge(0))
    gradient_accumulation_steps: int = h("Micro-batches per optimizer step when global_batch_size is 0.", 1,
                                         validator=v.gt(0))
    learning_rate: float = h("Peak learning rate (Muon LR for Muon optimizers).", 3e-4, validator=v.gt(0))
    lr_schedule: str = h("warmup_linear (upstream HF default), warmup_cosine, constant.", "warmup_linear",
                         validator=v.in_(("warmup_linear", "warmup_cosine", "constant")))
    warmup_steps: int = h("Linear warmup optimizer steps.", 0, validator=v.ge(0))
    max_grad_norm: float = h("Global-norm clipping (0: off).", 1.0, validator=v.ge(0))
    loss_normalization: str = h("token_mean_effective_batch (upstream) or mean_of_microbatch_means (port).",
                                "token_mean_effective_batch",
                                validator=v.in_(("token_mean_effective_batch", "mean_of_microbatch_means")))
    num_train_epochs: float = h("Epochs over the concatenated task datasets.", 1.0, validator=v.gt(0))
    max_steps: int = h("Optimizer steps (>0 overrides epochs).", -1)
    logging_steps: int = h("Log every N optimizer steps.", 10, validator=v.gt(0))
    eval_steps: float = h("Validation loss (train) / decoding eval (train_eval) every N steps; 0 < N < 1: every "
                          "ceil(N * total steps), a share of training as HF's eval_steps=0.05 in upstream sft.py; "
                          "0: per epoch; <0: never.", -1)
    save_steps: int = h("Write sft_state_step<N> every N steps (0: off).", 0, validator=v.ge(0))
    save_total_limit: int = h("Keep this many step snapshots (0: all).", 1, validator=v.ge(0))
    save_last: bool = h("Write sft_state_last at the end (and on preemption).", True)
    save_best: bool = h("Keep sft_state_best by save_best_metric.", True)
    save_best_metric: str = h("eval_loss (lower is better, upstream) or ndcg@K / hr@K (decoding eval).", "eval_loss")
    early_stopping_patience: int = h("Stop after N evals without improvement (0: off).", 0, validator=v.ge(0))
    train_from_scratch: bool = h("Random init from model.preset/base_model config instead of weights.", False)
    resume_from_checkpoint: str | None = h(
        "Weights to start from (train/train_eval; eval: the weights to score): an HF folder, a sid run dir or "
        "store URI (#name picks a checkpoint), or a params .msgpack file. Optimizer state and data cursor are "
        "restored too when the checkpoint has them. The run's own newest checkpoint wins on a rerun.", None)
    resume_fallback: bool = h("When the run's newest checkpoint is damaged, resume from its newest intact one "
                              "instead of stopping with an error (the damaged one is replaced at the next save).",
                              False)
    seed_shuffle: bool = h("Shuffle training examples each epoch with the run seed.", True)
    trainable: str = h("all, or sid_rows (MiniOneRec freeze_LLM): only the SID token rows of the embedding "
                       "and untied LM head learn; everything else stays bitwise unchanged.", "all",
                       validator=v.in_(("all", "sid_rows")))


@attrs.frozen(kw_only=True)
class EvalConfig:
    enabled: bool = h("Run decoding eval in eval / train_eval modes.", True)
    split: str = h("test or valid.", "test", validator=v.in_(("test", "valid")))
    use_best_checkpoint: bool = h("train_eval: evaluate sft_state_best instead of the final params.", False)
    batch_size: int = h("Prompts per decode call (global; sharded over the data axes).", 8, validator=v.gt(0))
    num_beams: int = h("Beams = returned predictions per prompt.", 50, validator=v.gt(0))
    topk: list[int] = h("K values for HR@K / NDCG@K (K <= num_beams).", [1, 3, 5, 10, 20, 50])
    prefill_buckets: list[int] = h("Prompt lengths compiled for prefill (smallest fitting is used; the largest "
                                   "must hold data.eval_max_len, checked before training).",
                                   [128, 256, 512, 1024, 2048, 2560])
    random_weights: bool = h("eval runs: score a randomly initialised model (a sanity floor) instead of refusing "
                             "when no trained weights are found.", False)
    save_predictions_json: bool = h("Write eval_predictions.json (calc.py-compatible).", True)
    popularity_baseline: bool = h("Also report a most-popular-items baseline from the training targets.", True)


@attrs.frozen(kw_only=True)
class WandbConfig:
    project: str = h("W&B project.", "minionerec-sid-sft")
    mode: str = h("online, offline or disabled.", "disabled", validator=v.in_(("online", "offline", "disabled")))
    name: str | None = h("Run name (default <category>-sid-sft-<timestamp>).", None)


def _profile_steps(_inst: Any, _attr: attrs.Attribute, value: list[int]) -> None:
    if value and (len(value) != 2 or not all(isinstance(x, int) for x in value) or not 1 <= value[0] <= value[1]):
        raise ValueError(f"profile.steps must be [] or [start, stop] with 1 <= start <= stop, got {value!r}")


@attrs.frozen(kw_only=True)
class ProfileConfig:
    steps: list[int] = h("[start, stop]: write a jax.profiler trace of these steps (1-based, both included; SFT or RL "
                         "steps, decode batches in an eval run) into <output_dir>/profile/ ([] = off).", [],
                         validator=_profile_steps)


@attrs.frozen(kw_only=True)
class ComponentConfig:
    """A selected component: its registered name and its own (plugin-defined) attrs options."""

    name: str
    options: Any  # instance of the component's config class


@attrs.frozen(kw_only=True)
class RunConfig:
    base_model: str = h("HF folder / hub id of the starting weights ('' = model.preset, random init).", "")
    output_dir: str = h("Run directory (resumes if it holds a checkpoint).", "runs/sid_sft")
    checkpoint_uri: str | None = h("Where the store keeps checkpoints (default: output_dir), e.g. gs://bucket/run.",
                                   None)
    seed: int = h("Global seed (data order, init).", 42)
    run_mode: str = h("train, eval, train_eval, or rl (GRPO post-training from the start weights, then eval).",
                      "train_eval", validator=v.in_(("train", "eval", "train_eval", "rl")))
    model: ModelConfig = field(factory=ModelConfig)
    jax: JaxConfig = field(factory=JaxConfig)
    data: DataConfig = field(factory=DataConfig)
    tasks: TasksConfig = field(factory=TasksConfig)
    train: TrainConfig = field(factory=TrainConfig)
    eval: EvalConfig = field(factory=EvalConfig)
    wandb: WandbConfig = field(factory=WandbConfig)
    rl: RLConfig = field(factory=RLConfig)
    profile: ProfileConfig = field(factory=ProfileConfig)
    optimizer: ComponentConfig
    decoder: ComponentConfig
    store: ComponentConfig
    launcher: ComponentConfig
    metrics: tuple[ComponentConfig, ...]


SECTIONS = {
    "model": ModelConfig,
    "jax": JaxConfig,
    "data": DataConfig,
    "tasks": TasksConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "wandb": WandbConfig,
    "rl": RLConfig,
    "profile": ProfileConfig,
}
COMPONENT_SECTIONS = {"optimizer": "optimizer", "decoder": "decoder", "store": "store", "launcher": "launcher"}
DEFAULT_COMPONENTS = {"optimizer": "adamw", "decoder": "trie", "store": "msgpack", "launcher": "local"}
DEFAULT_METRICS = ("hr", "ndcg", "invalid")
