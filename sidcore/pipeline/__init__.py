"""``sid pipeline``: raw data -> .inter -> embeddings -> SIDs -> split CSVs -> SFT -> RL -> eval as
stages that skip themselves when their record matches (docs/data.md, "The whole pipeline in one
command"). `spec` reads the YAML, `stages` plans each stage, `runner` decides and runs them."""
