"""Sequential-recommender baselines of upstream MiniOneRec ``sasrec.py`` (SASRec, GRU4Rec, Caser) in
Flax NNX: `models` (the networks, upstream parameter names), `losses` (bce/ce + DRO, full-ranking
metrics), `data` (CSV splits -> id windows), `train` (the loop), `checkpoint`, `run` (``sid baseline``).
Importing this package imports nothing heavy; the submodules import jax."""
