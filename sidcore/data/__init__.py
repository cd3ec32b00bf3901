"""MiniOneRec data for `sid`: file readers, tokenizer + SID vocabulary, the SFT tasks, catalog and batching.

Modules (import them directly; this package imports nothing heavy):

- `sidcore.data.minionerec`: strict readers of the CSV / info / index.json / item.json formats.
- `sidcore.data.tokenizer`: bundled Qwen2.5 tokenizer, `load_tokenizer`, `add_sid_tokens`.
- `sidcore.data.prompts`, `sidcore.data.encoding`, `sidcore.data.tasks`: the five SFT tasks, the
  validation set and the eval prompts as token ids (upstream templates and encoding rules).
- `sidcore.data.catalog`: `build_catalog` -> `sidcore.interfaces.SidCatalog`.
- `sidcore.data.batching`: numpy padding/packing, `DataOrder`.
- `sidcore.data.make_sample`: rebuilds the bundled sample under ``sidcore/assets/minionerec``.
"""
