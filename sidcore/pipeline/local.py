"""The pipeline's two self-made inputs: a synthetic raw Amazon category and a tiny local embedder.

Both are written atomically (a temporary sibling renamed into place), so an interrupted stage never
leaves a half-written file for a later run to trust.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["TINY_EMBEDDER", "raw_paths", "write_synthetic", "write_tiny_embedder"]

# The tiny random Qwen2 that `embed.model: tiny-local` builds (bundled Qwen2.5 tokenizer, tied
# embeddings); a fixed seed makes its embeddings, and so the SIDs, the same on every machine.
TINY_EMBEDDER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "seed": 0}


def raw_paths(folder: Path, dataset: str, source: str) -> tuple[Path, Path]:
    """(reviews, meta) file names that `write_synthetic` writes for `source`."""
    ext = "jsonl" if source == "amazon23" else "json"
    return folder / f"{dataset}.{ext}", folder / f"meta_{dataset}.{ext}"


def write_synthetic(folder: Path, dataset: str, source: str, *, reviews: int, seed: int) -> tuple[Path, Path]:
    """Generate the synthetic raw category (`sidcore.dataprep.synthetic`) into `folder`."""
    from sidcore.dataprep import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    targets = raw_paths(folder, dataset, source)
    with tempfile.TemporaryDirectory(prefix=".synthetic-", dir=folder) as tmp:
        if source == "amazon23":
            made = synthetic.write_amazon23(tmp, n_reviews=reviews, seed=seed, name=dataset)
        else:  # no lone surrogates: upstream's convert cannot write such titles, so sid's faithful one neither
            made = synthetic.write_amazon18(tmp, n_reviews=reviews, seed=seed, name=dataset, lone_surrogates=False)
        for src, dst in zip(made, targets):
            os.replace(src, dst)
    return targets


def write_tiny_embedder(out: Path) -> Path:
    """A random tiny Qwen2 transformers folder (config, safetensors, the bundled tokenizer) at `out`."""
    from flax import nnx

    from sidcore.data.tokenizer import bundled_tokenizer_dir, load_tokenizer
    from sidcore.model import Qwen2Config, Qwen2ForCausalLM, export_hf

    tok = load_tokenizer("bundled")
    sizes = {k: v for k, v in TINY_EMBEDDER.items() if k != "seed"}
    cfg = Qwen2Config.tiny(vocab_size=len(tok), tie_word_embeddings=True, **sizes)
    model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(TINY_EMBEDDER["seed"]))
    files = {p.name: p.read_bytes() for p in Path(bundled_tokenizer_dir()).iterdir()
             if p.is_file() and p.name.startswith("tokenizer")}
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(export_hf(model, cfg, out, extra_files=files))

