"""Config classes of the launcher components (``launcher: {name: ..., <options>}``).

Light on purpose (attrs + stdlib only) so that listing plugins never imports jax. Every string
that ends up inside a remote shell command (TPU name, zone, repo, paths, ...) is checked against a
strict pattern here, and quoted again with `shlex.quote` where it is interpolated.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs import field, validators as v

PROVISIONING = ("spot", "on_demand", "queued_flex_start", "queued_guaranteed")
INSTALLS = ("venv", "conda")

TPU_NAME_RE = r"^([a-z]([-a-z0-9]{0,61}[a-z0-9])?)?$"
ZONE_RE = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"
PROJECT_RE = r"^([a-z][-a-z0-9]{4,28}[a-z0-9])?$"
ACCELERATOR_RE = r"^(v2|v3|v4|v5p|v5litepod|v6e)-[0-9]+$"
RUNTIME_RE = r"^(auto|[a-z0-9][-a-z0-9.]*)$"
DURATION_RE = r"^[0-9]+[smhd]$"
REPO_URL_RE = r"^((https|ssh|git)://[^\s'\"\\;&|`$]+|git@[^\s'\"\\;&|`$]+)?$"
REF_RE = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
ABS_PATH_RE = r"^/[A-Za-z0-9._/-]*$"
ENV_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
PYTHON_RE = r"^3\.[0-9]+$"
EXTRA_RE = r"^[a-z0-9][a-z0-9_-]*$"
STORE_URI_RE = r"^((gs|file|orbax\+gs)://[^\s'\"\\;&|`$]*|/[^\s'\"\\;&|`$]*)?$"


def _matches(pattern: str) -> Any:
    """attrs validator: the value (or every item of a list) fully matches `pattern`."""
    rx = re.compile(pattern)

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not isinstance(item, str) or not rx.match(item) or ".." in item.split("/"):
                raise ValueError(f"'{attr.name}' must match {pattern} (got {item!r})")

    return check


def h(text: str, default: Any, **kw: Any) -> Any:
    """An attrs field with help text (printed by ``sid config show --help-keys``)."""
    kw.setdefault("metadata", {})["help"] = text
    if isinstance(default, list):
        return field(factory=lambda d=default: list(d), **kw)
    return field(default=default, **kw)


@attrs.frozen(kw_only=True)
class LocalConfig:
    """``local``: run the job in the ``sid run`` process itself (no options)."""


@attrs.frozen(kw_only=True)
class LocalMultiprocessConfig:
    """``local_multiprocess``: N processes on this machine joined by ``jax.distributed``."""

    num_processes: int = h("Processes to start (each one is a jax process).", 2, validator=v.ge(1))
    coordinator_port: int = h("Port of process 0's coordinator on 127.0.0.1 (0: a free port at plan time).",
                              0, validator=[v.ge(0), v.le(65535)])
    devices_per_process: int | None = h(
        "CPU devices per process (sets XLA_FLAGS=--xla_force_host_platform_device_count=N and "
        "JAX_PLATFORMS=cpu in each child); null: leave the platform alone.", None,
        validator=v.optional(v.ge(1)))
    bnb_stub: bool = h("Prepend the bitsandbytes stub folder (stubs/) to the children's PYTHONPATH.", False)


@attrs.frozen(kw_only=True)
class TpuVmConfig:
    """``tpu_vm``: Cloud TPU VMs driven through ``gcloud alpha compute tpus`` (see ``sid tpu --help``)."""

    tpu_name: str = h("TPU VM (or queued resource) name; required by every command.", "",
                      validator=_matches(TPU_NAME_RE))
    zone: str = h("Zone of the VM (first zone tried by create).", "us-central2-b",
                  validator=_matches(ZONE_RE))
    project: str = h("GCP project ('' = gcloud's configured default project).", "",
                     validator=_matches(PROJECT_RE))
    accelerator_type: str = h("TPU type, e.g. v6e-8, v6e-16, v4-8, v5litepod-8.", "v6e-8",
                              validator=_matches(ACCELERATOR_RE))
    runtime_version: str = h("TPU software version (auto: v6e -> v6e-ubuntu-2404, v5litepod -> "
                             "v2-alpha-tpuv5-lite, v5p -> v2-alpha-tpuv5, v2/v3/v4 -> tpu-ubuntu2204-base).",
                             "auto", validator=_matches(RUNTIME_RE))
    provisioning: str = h("spot, on_demand, queued_flex_start or queued_guaranteed (queued resources).",
                          "spot", validator=v.in_(PROVISIONING))
    max_run_duration: str = h("queued_flex_start: --max-run-duration (e.g. 3600s, 8h).", "3600s",
                              validator=_matches(DURATION_RE))
    zones_fallback: list[str] = h("Zones create tries next, in order, on capacity/quota errors.", [],
                                  validator=_matches(ZONE_RE))
    num_workers: int = h("Hosts of the slice (0: derived from accelerator_type, e.g. v6e-16 -> 4).", 0,
                         validator=v.ge(0))
    repo_url: str = h("Git URL of this project, cloned on the VM by bootstrap.", "",
                      validator=_matches(REPO_URL_RE))
    repo_ref: str = h("Branch, tag or commit checked out by bootstrap.", "main", validator=_matches(REF_RE))
    workdir: str = h("Checkout folder on the VM (runs start there; logs/ lives there).", "/root/sid",
                     validator=_matches(ABS_PATH_RE))
    env_name: str = h("venv (/root/venvs/<env_name>) or conda env name.", "sid",
                      validator=_matches(ENV_NAME_RE))
    install: str = h("Python environment: venv or conda (Miniconda installed if missing).", "venv",
                     validator=v.in_(INSTALLS))
    python: str = h("Python version of the environment.", "3.12", validator=_matches(PYTHON_RE))
    extras: list[str] = h("Extras of this package installed on the VM (pip install -e '.[gcs]').", ["gcs"],
                          validator=_matches(EXTRA_RE))
    env_file: str = h("Local secrets file copied to /root/.env (mode 600) by sync-env.", ".env")
    store_uri: str = h("Checkpoint store URI of the run (gs://...), passed as checkpoint_uri=... so a rerun "
                       "after preemption resumes from it ('' = the config's own store).", "",
                       validator=_matches(STORE_URI_RE))
    bnb_stub: bool = h("Prepend <workdir>/stubs (bitsandbytes stub) to PYTHONPATH of runs.", False)
    max_restarts: int = h("supervise: recreate + rerun at most this many times.", 3, validator=v.ge(0))
    poll_interval_s: float = h("supervise: seconds between status polls.", 60.0, validator=v.ge(0))
    max_ready_polls: int = h("Status polls to wait for READY after create before giving up.", 120,
                             validator=v.ge(1))
