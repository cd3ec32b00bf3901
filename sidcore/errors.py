"""The one exception tree of `sid`.

Every error a user can cause (bad config, bad data file, unknown plugin, corrupt checkpoint) is a
`SidError`. The CLI prints it as a single `Error: ...` line and exits 1 (2 for usage errors); a
traceback is shown only with `--debug`. Messages name the file, line or key at fault.
"""

from __future__ import annotations


class SidError(Exception):
    """Base class of every user-facing `sid` error."""

    exit_code = 1


class UsageError(SidError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = 2


class ConfigError(SidError):
    """A config file, key or value is invalid."""


class PluginLoadError(SidError):
    """A plugin failed to import or register (fatal only under SID_STRICT_PLUGINS=1)."""


class UnknownComponentError(SidError):
    """A component name that no loaded plugin registered (message lists close matches)."""


class AmbiguousComponentError(SidError):
    """`--plugin NAME` matches components of several kinds."""


class DuplicateComponentError(SidError):
    """Two plugins registered the same (kind, name)."""


class DataError(SidError):
    """An input data file (CSV, info, index, item JSON, predictions) is malformed."""


class CheckpointError(SidError):
    """A checkpoint is missing, corrupt or does not fit the model."""


class TrainingError(SidError):
    """Training cannot go on (e.g. non-finite loss)."""


class LaunchError(SidError):
    """A launcher plan failed to execute."""


class Preempted(SidError):
    """The run was asked to stop (SIGTERM/SIGINT) and saved a checkpoint; exit code 75 (EX_TEMPFAIL)."""

    exit_code = 75


def file_error(path: object, message: str, *, line: int | None = None, key: str | None = None) -> DataError:
    """Build a `DataError` whose text starts with `path[:line][ key]:`."""
    where = str(path)
    if line is not None:
        where += f":{line}"
    if key is not None:
        where += f" [{key}]"
    return DataError(f"{where}: {message}")
