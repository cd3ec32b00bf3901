"""``sid index build``, ``sid index assign`` and ``sid index stats`` (registered via ``register_commands``).

Both live in the ``sid index`` group; a plugin that adds more ``index`` subcommands (e.g.
``embed``) should reuse an existing ``index`` group the same way `add_commands` does.
"""

from __future__ import annotations

import json

import click

__all__ = ["add_commands", "assign", "build", "index_group", "stats"]


@click.group("index")
def index_group() -> None:
    """Build and inspect SID indices (item embeddings -> semantic IDs -> index.json)."""


@index_group.command("stats")
@click.argument("index_path", metavar="INDEX.json", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(index_path: str, as_json: bool) -> None:
    """Items, unique SIDs, collision rate, groups, codes used per level, max branching."""
    from sidcore.api import read_index
    from sidcore.api import format_stats, index_stats

    result = index_stats(read_index(index_path))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_stats(result, source=index_path))


@index_group.command("build", context_settings={"ignore_unknown_options": False})
@click.option("--embeddings", required=True, type=click.Path(dir_okay=False),
              help="Item embeddings .npy [N, D], row i = item id i.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Source MiniOneRec data/Amazon folder (index/, info/, train|valid|test/).")
@click.option("--category", help="Category, e.g. Industrial_and_Scientific (with --data-dir).")
@click.option("--inter-dir", type=click.Path(file_okay=False),
              help="Instead of --data-dir: an upstream .inter folder DIR/NAME holding NAME.item.json "
                   "(sid data amazon18); writes OUT/NAME.index.json for sid data convert.")
@click.option("--dataset", help="NAME of the files in --inter-dir (default: the folder's name).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: the same layout as --data-dir (then train with data.data_dir=OUT), or "
                   "NAME.index.json with --inter-dir.")
@click.option("--force", is_flag=True, help="With --inter-dir: replace an existing OUT/NAME.index.json.")
@click.option("--quantizer", "quantizer_name", default="rq_kmeans", show_default=True,
              help="Quantizer component (sid plugins list).")
@click.option("--seed", default=2024, show_default=True, type=int, help="Quantizer seed (upstream 2024).")
@click.option("--sinkhorn-rounds", default=0, show_default=True, type=int,
              help="Rounds of Sinkhorn re-assignment of colliding items' last level (upstream RQ-VAE: 20).")
@click.option("--sinkhorn-eps", default=0.003, show_default=True, type=float, help="Sinkhorn epsilon.")
@click.option("--sinkhorn-iterations", default=50, show_default=True, type=int, help="Sinkhorn sweeps.")
@click.option("--dedup", type=click.Choice(["none", "variable", "fixed"]), default="none", show_default=True,
              help="Extra level making SIDs unique: variable = <d_r> on colliding items only (upstream), "
                   "fixed = on every item, <d_0> when unique (GRID).")
@click.option("--code-offset", default=0, show_default=True, type=int,
              help="Added to every code (1 = upstream constrained RQ-Kmeans numbering).")
@click.option("--embedding-model", default="", help="Name of the model that made --embeddings (recorded in "
              "the saved quantizer; `sid index assign` checks it).")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE ...]")
def build(embeddings, data_dir, category, inter_dir, dataset, out, force, quantizer_name, seed,
          sinkhorn_rounds, sinkhorn_eps, sinkhorn_iterations, dedup, code_offset, embedding_model, as_json,
          overrides) -> None:
    """Quantize item embeddings into SIDs and write OUT in the MiniOneRec layout (or NAME.index.json).

    KEY=VALUE sets quantizer options, e.g. codebook_sizes=[256,256,256] epochs=10000. The fitted
    quantizer is saved in OUT/index/C.quantizer/ (for `sid index assign`).
    """
    from sidcore.api import format_stats, index_stats
    from sidcore.api import load_plugins
    from sidcore.api import UsageError
    from sid_quantizers.build import build_index, resolve_quantizer

    if inter_dir and (data_dir or category):
        raise UsageError("give either --inter-dir DIR/NAME or --data-dir DIR --category C, not both")
    if not inter_dir and not (data_dir and category):
        raise UsageError("say where the items are: --data-dir DIR --category C, or --inter-dir DIR/NAME")
    if dataset and not inter_dir:
        raise UsageError("--dataset goes with --inter-dir")
    spec, options = resolve_quantizer(load_plugins().registry, quantizer_name, overrides)
    report = build_index(
        embeddings=embeddings, data_dir=data_dir, category=category, out=out, inter_dir=inter_dir,
        dataset=dataset, force=force,
        quantizer=spec.build(options), quantizer_name=quantizer_name, options=options, seed=seed,
        sinkhorn_rounds=sinkhorn_rounds, sinkhorn_eps=sinkhorn_eps, sinkhorn_iterations=sinkhorn_iterations,
        dedup=dedup, code_offset=code_offset, embedding_model=embedding_model,
    )
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from sidcore.api import read_index

    index_file = report["files"]["index"]
    click.echo(format_stats(index_stats(read_index(index_file)), source=index_file))
    click.echo(f"wrote {', '.join(report['files'].values())}")


@index_group.command("assign")
@click.option("--quantizer-dir", required=True, type=click.Path(file_okay=False),
              help="A saved quantizer: OUT/index/C.quantizer/ of `sid index build`.")
@click.option("--embeddings", required=True, type=click.Path(dir_okay=False),
              help="New items' embeddings .npy [M, D] (same model and dim as the build's).")
@click.option("--ids", "ids_file", type=click.Path(dir_okay=False),
              help="Text file, one item id per line for the rows of --embeddings (default: the next "
                   "integers after the index's largest id).")
@click.option("--index", "index_path", type=click.Path(dir_okay=False),
              help="Existing index.json whose SIDs must not collide (default: the one beside the quantizer).")
@click.option("--embedding-model", default="", help="Model that made --embeddings; must equal the build's "
              "when both are known.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the new items' SIDs (index.json format) here; default: print them.")
@click.option("--merged", is_flag=True, help="With --out: write the existing index plus the new items.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def assign(quantizer_dir, embeddings, ids_file, index_path, embedding_model, out_path, merged, force,
           as_json) -> None:
    """Give new items SIDs in an existing space; existing items keep theirs.

    Collisions are resolved the way the build was configured (its --sinkhorn-rounds, --dedup),
    and counted in the report.
    """
    from sid_quantizers.assign import run_assign

    run_assign(quantizer_dir=quantizer_dir, embeddings=embeddings, ids_file=ids_file, index_path=index_path,
               embedding_model=embedding_model, out_path=out_path, merged=merged, force=force,
               as_json=as_json)


def add_commands(cli: click.Group) -> None:
    """Attach ``index build|assign|stats``, merging into an ``index`` group another plugin already added."""
    existing = cli.commands.get("index") if hasattr(cli, "commands") else None
    if isinstance(existing, click.Group) and existing is not index_group:
        for name, cmd in index_group.commands.items():
            existing.add_command(cmd, name)
        return
    cli.add_command(index_group)
