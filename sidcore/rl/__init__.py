"""The RL stage: GRPO-style post-training with trie-constrained beam rollouts and ranking rewards.

Modules: `config` (the ``rl`` section), `rewards` (combining reward components), `advantages`
(grpo / rloo / drgrpo), `loss` (upstream MiniOneRec ``compute_loss`` and its aggregations),
`rollout` (G beams or G trie-constrained samples per prompt, inside jit), `step` (the jitted rollout
and update functions), `trainer` (`RLTrainer` and the `train_rl` entry function).
"""
