"""``sid index``: the SID-construction group. The kernel owns ``embed`` (it runs sid's own model);
quantizer plugins add ``build`` / ``stats`` into this same group through ``register_commands``."""

from __future__ import annotations

import click

from sidcore.index.commands import embed_command


def make_index_group() -> click.Group:
    """A fresh ``index`` group per CLI (plugins add their subcommands to it)."""

    @click.group("index")
    def index() -> None:
        """Build and inspect SID indices (item text -> embeddings -> semantic IDs -> index.json)."""

    index.add_command(embed_command, "embed")
    return index
