"""The data stage: raw interactions (Amazon 2018 / 2023 dumps, any CSV/Parquet log) -> MiniOneRec's
``.inter`` folder (`prepare_amazon18`, ...), and ``.inter`` + index.json -> the split CSVs sid trains
on (`convert`). Column-wise (polars + numpy), with upstream's exact rules; docs/data.md."""
