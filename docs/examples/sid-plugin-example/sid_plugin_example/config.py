"""Option classes of the example's components (light: imported when the plugin registers)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class NpzDirConfig:
    fsync: bool = attrs.field(default=True, metadata={"help": "fsync files before publishing them."})


@attrs.frozen(kw_only=True)
class NiceLocalConfig:
    niceness: int = attrs.field(default=10, validator=[attrs.validators.ge(0), attrs.validators.le(19)],
                                metadata={"help": "nice increment of the child process (0..19)."})
