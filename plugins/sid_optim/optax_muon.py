"""The `optax_muon` optimizer component: ``optax.contrib.muon`` (optax 0.2.8) with explicit routing.

``optax.contrib.muon`` sends *every* 2-D leaf to Muon when it is not told otherwise, the embedding
table and an untied lm_head included. This component always passes
``muon_weight_dimension_numbers`` as a callable that returns ``None`` (= its internal Adam) for the
leaves `sid_optim.common.route_leaf` sends to Adam.

Shape scaling across optax versions: the reference run used optax 0.2.6, whose ``scale_by_muon``
multiplied the orthogonalized update by ``sqrt(max(1, fan_out / fan_in))`` (fan_in = shape[0]). In
optax 0.2.8 ``scale_by_muon`` no longer scales; ``muon`` chains a separate ``scale_by_shape`` that
applies the same factor (or ``consistent_rms * sqrt(max(fan_in, fan_out))`` when
``consistent_rms`` is set). So ``shape_scaling="optax_0_2_6"`` is simply optax 0.2.8's default and
``"moonshot"`` passes ``consistent_rms``. ``"none"`` is obtained without touching optax internals:
for a wide leaf (shape[1] > shape[0]) the dimension numbers are swapped to
``reduction_axis=1, output_axis=0``. Newton–Schulz is transpose-equivariant and optax transposes
wide/tall inputs to the same orientation anyway, so the orthogonalized update is bit-identical,
while the width factor becomes ``sqrt(max(1, shape[0] / shape[1])) = 1``.

Other optax 0.2.8 behaviours to know (they differ from the reference's separate ``optax.adamw``):
its internal Adam reuses ``eps`` (1e-7 here) and ``mu_dtype``, and is NAdam when ``nesterov``.
`muon_local` reproduces the reference's plain aux AdamW exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax
from optax.contrib import MuonDimensionNumbers

from sid_optim.common import MUON, dtype_or_none, keep_update_dtypes, route_leaf
from sid_optim.config import OptaxMuonConfig

_STANDARD = MuonDimensionNumbers(reduction_axis=0, output_axis=1)  # Flax kernels are [in, out]
_SWAPPED = MuonDimensionNumbers(reduction_axis=1, output_axis=0)


def dimension_numbers_fn(*, max_dim: int | None, shape_scaling: str) -> Callable[[Any], Any]:
    """``params -> tree of MuonDimensionNumbers | None`` (None routes a leaf to optax's Adam).

    Args:
        max_dim: the optional size rule of `route_leaf`.
        shape_scaling: ``"none"`` swaps the axes of wide leaves so optax's width factor is 1.

    Returns:
        A callable for ``optax.contrib.muon(muon_weight_dimension_numbers=...)``. optax also calls
        it on trees where non-Muon leaves are already masked; those have no leaves, so are skipped.
    """

    def leaf_spec(path: tuple[Any, ...], leaf: Any) -> MuonDimensionNumbers | None:
        if route_leaf(path, leaf, max_dim=max_dim) != MUON:
            return None
        rows, cols = leaf.shape
        if shape_scaling == "none" and cols > rows:
            return _SWAPPED
        return _STANDARD

    def fn(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(leaf_spec, params)

    return fn


def build(
    cfg: OptaxMuonConfig,
    *,
    learning_rate: float,
    make_schedule: Callable[[float], optax.Schedule],
) -> optax.GradientTransformation:
    """Build ``optax.contrib.muon`` for the kernel.

    Args:
        cfg: the component's options.
        learning_rate: peak Muon learning rate (``train.learning_rate``).
        make_schedule: ``peak -> schedule`` owned by the kernel; called once for the Muon LR and
            once for ``cfg.aux_learning_rate`` (two schedules of the same shape, as the reference).

    Returns:
        An ``optax.GradientTransformation`` whose updates keep the gradients' dtypes.
    """
    tx = optax.contrib.muon(
        learning_rate=make_schedule(learning_rate),
        ns_coeffs=cfg.ns_coeffs,
        ns_steps=cfg.ns_steps,
        beta=cfg.momentum,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mu_dtype=dtype_or_none(cfg.mu_dtype),
        nesterov=cfg.nesterov,
        adam_b1=cfg.adam_b1,
        adam_b2=cfg.adam_b2,
        adam_weight_decay=cfg.adam_weight_decay,
        adam_learning_rate=make_schedule(cfg.aux_learning_rate),
        muon_weight_dimension_numbers=dimension_numbers_fn(
            max_dim=cfg.max_dim, shape_scaling=cfg.shape_scaling
        ),
        consistent_rms=cfg.consistent_rms if cfg.shape_scaling == "moonshot" else None,
    )
    return keep_update_dtypes(tx)
