"""Options of the built-in optimizers (`adamw`, `optax_muon`, `muon_local`) as frozen attrs classes.

This module imports only attrs and the standard library, so `sid plugins list` and `sid config show`
can read option names, defaults and help texts without importing jax or optax. The learning rate
and its schedule are *not* options here: the peak Muon/AdamW rate is ``train.learning_rate`` and the
warmup/decay shape is owned by the kernel's ``train.*`` keys (the kernel hands each factory a
``make_schedule(peak)``). Defaults reproduce the reference runs (reference-spec §5); see
``docs/optimizers.md`` for the mapping.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import validators as v

MU_DTYPES = ("float32", "bfloat16")
NS_DTYPES = ("float32", "bfloat16")
SHAPE_SCALINGS = ("none", "optax_0_2_6", "moonshot")
MOMENTUM_FORMS = ("sum", "ema")
DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def _h(text: str, default: Any, **kw: Any) -> Any:
    """An attrs field with a default and ``metadata["help"]``."""
    return attrs.field(default=default, metadata={"help": text}, **kw)


def _unit_interval(inst: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


def _optional_dtype(inst: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and value not in MU_DTYPES:
        raise ValueError(f"{attribute.name} must be one of {MU_DTYPES} or null, got {value!r}")


def _optional_positive_int(inst: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ValueError(f"{attribute.name} must be a positive int or null, got {value!r}")


def _ns_coeffs(inst: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 3:
        raise ValueError(f"{attribute.name} must be three numbers (a, b, c), got {value!r}")


def _to_coeffs(value: Any) -> tuple[float, float, float]:
    return tuple(float(x) for x in value)  # type: ignore[return-value]


_MU_HELP = "dtype of the first moment: float32, bfloat16, or null (= the parameter's dtype)."
_MAX_DIM_HELP = ("Extra Muon rule: a 2-D leaf with max(shape) > max_dim goes to the aux Adam (reference: "
                 "10000); null disables the rule. Paths containing 'embed'/'lm_head' and non-2-D leaves go "
                 "to Adam regardless.")


@attrs.frozen(kw_only=True)
class AdamWConfig:
    """`adamw`: ``optax.adamw`` with the kernel's schedule (reference-spec §5.1)."""

    b1: float = _h("Exponential decay of the first moment.", 0.9, validator=_unit_interval)
    b2: float = _h("Exponential decay of the second moment.", 0.999, validator=_unit_interval)
    eps: float = _h("Added to the denominator sqrt(nu_hat) + eps.", 1e-8, validator=v.ge(0))
    weight_decay: float = _h("Decoupled weight decay, multiplied by the learning rate (reference: 0.0).",
                             0.0, validator=v.ge(0))
    mu_dtype: str | None = _h(_MU_HELP + " The reference 'mu_fp32' runs used float32.", None,
                              validator=_optional_dtype)


@attrs.frozen(kw_only=True)
class OptaxMuonConfig:
    """`optax_muon`: ``optax.contrib.muon`` with explicit Muon/Adam routing (reference-spec §5.4).

    Option names follow ``optax.contrib.muon`` where they map one to one (``adam_b1``...).
    """

    aux_learning_rate: float = _h("Peak LR of the internal Adam (embeddings, lm_head, 1-D leaves); uses "
                                  "the same schedule shape as the Muon LR.", 3e-4, validator=v.gt(0))
    momentum: float = _h("Muon momentum (optax 'beta'); EMA with Adam-style bias correction.", 0.95,
                         validator=_unit_interval)
    nesterov: bool = _h("Nesterov momentum (optax also switches its internal Adam to NAdam).", True)
    ns_steps: int = _h("Newton-Schulz iterations.", 5, validator=v.gt(0))
    ns_coeffs: tuple[float, float, float] = _h("Quintic Newton-Schulz coefficients (a, b, c).",
                                               DEFAULT_NS_COEFFS, converter=_to_coeffs,
                                               validator=_ns_coeffs)
    eps: float = _h("Newton-Schulz X/(||X||_F + eps); optax reuses it as the internal Adam's eps "
                    "(reference 1e-7; optax default 1e-8).", 1e-7, validator=v.ge(0))
    weight_decay: float = _h("Decoupled weight decay of the Muon leaves (times the LR).", 0.0,
                             validator=v.ge(0))
    shape_scaling: str = _h("Muon update scaling: optax_0_2_6 = sqrt(max(1, fan_out/fan_in)) (optax "
                            "default, as in the reference run); moonshot = consistent_rms*sqrt(max(fan_in, "
                            "fan_out)); none = no scaling.", "optax_0_2_6", validator=v.in_(SHAPE_SCALINGS))
    consistent_rms: float = _h("Factor of the 'moonshot' scaling (Moonshot: 0.2 matches AdamW's RMS).", 0.2,
                               validator=v.gt(0))
    adam_b1: float = _h("Internal Adam first-moment decay.", 0.9, validator=_unit_interval)
    adam_b2: float = _h("Internal Adam second-moment decay (optax default 0.999).", 0.999,
                        validator=_unit_interval)
    adam_weight_decay: float = _h("Internal Adam decoupled weight decay.", 0.0, validator=v.ge(0))
    mu_dtype: str | None = _h(_MU_HELP + " Applies to the Muon momentum and the internal Adam's mu "
                              "(reference: float32).", "float32", validator=_optional_dtype)
    max_dim: int | None = _h(_MAX_DIM_HELP, 10000, validator=_optional_positive_int)


@attrs.frozen(kw_only=True)
class MuonLocalConfig:
    """`muon_local`: our Muon (``scale_by_muon_local``) plus an AdamW partition (reference-spec §5.3).

    Defaults reproduce the reference local Muon; ``momentum_form=ema, ns_dtype=float32,
    shape_scaling=optax_0_2_6`` reproduces the reference optax 0.2.6 run (§5.4).
    """

    aux_learning_rate: float = _h("Peak LR of the aux AdamW (embeddings, lm_head, 1-D leaves).", 3e-4,
                                  validator=v.gt(0))
    momentum: float = _h("Muon momentum coefficient mu.", 0.95, validator=_unit_interval)
    momentum_form: str = _h("sum: m = mu*m + g, no bias correction (reference local Muon); ema: m = "
                            "mu*m + (1-mu)*g with Adam-style bias correction (optax).", "sum",
                            validator=v.in_(MOMENTUM_FORMS))
    nesterov: bool = _h("Nesterov look-ahead on the momentum.", True)
    ns_steps: int = _h("Newton-Schulz iterations.", 5, validator=v.gt(0))
    ns_coeffs: tuple[float, float, float] = _h("Quintic Newton-Schulz coefficients (a, b, c).",
                                               DEFAULT_NS_COEFFS, converter=_to_coeffs,
                                               validator=_ns_coeffs)
    ns_dtype: str = _h("dtype of the Newton-Schulz iteration (reference local: bfloat16; optax: float32).",
                       "bfloat16", validator=v.in_(NS_DTYPES))
    eps: float = _h("Newton-Schulz X/(||X||_F + eps), norm in float32.", 1e-7, validator=v.ge(0))
    shape_scaling: str = _h("none (reference local); optax_0_2_6 = sqrt(max(1, fan_out/fan_in)) with "
                            "fan_in = shape[0]; moonshot = consistent_rms*sqrt(max(fan_in, fan_out)).",
                            "none", validator=v.in_(SHAPE_SCALINGS))
    consistent_rms: float = _h("Factor of the 'moonshot' scaling.", 0.2, validator=v.gt(0))
    weight_decay: float = _h("Decoupled weight decay of the Muon leaves (times the LR).", 0.0,
                             validator=v.ge(0))
    mu_dtype: str | None = _h(_MU_HELP + " (Muon momentum; reference: float32).", "float32",
                              validator=_optional_dtype)
    aux_b1: float = _h("Aux AdamW first-moment decay.", 0.9, validator=_unit_interval)
    aux_b2: float = _h("Aux AdamW second-moment decay.", 0.999, validator=_unit_interval)
    aux_eps: float = _h("Aux AdamW eps.", 1e-8, validator=v.ge(0))
    aux_weight_decay: float = _h("Aux AdamW decoupled weight decay.", 0.0, validator=v.ge(0))
    aux_mu_dtype: str | None = _h(_MU_HELP + " (aux AdamW).", None, validator=_optional_dtype)
    aux_nesterov: bool = _h("Aux NAdamW instead of AdamW (what optax.contrib.muon does when nesterov).",
                            False)
    max_dim: int | None = _h(_MAX_DIM_HELP, 10000, validator=_optional_positive_int)
