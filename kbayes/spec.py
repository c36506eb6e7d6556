"""Model specifications: TOML files in ``models/`` parsed into a frozen :class:`ModelSpec`.

A spec names the levels of the model, its terms, priors (as ``pymc_extras.prior.Prior``
tables), the g(t) shape, measurement error on/off, constants used to centre and scale
covariates, and the estimands with labels, units, ROPEs and decision thresholds. The format
is documented in ``models/README.md``. Every problem in a file is reported in one
:class:`~kbayes.errors.SpecError` naming the keys.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from pymc_extras.prior import Prior

from kbayes.errors import SpecError
from kbayes.expressions import (
    Estimand,
    Question,
    check_expr,
    evaluate,
    parse_estimands,
    parse_questions,
)
from kbayes.index_dims import (
    CONDITION,
    TIME,
    contrasts,
    dependent_dims,
    estimand_cells,
    indexed_values,
    parse_actives,
    parse_outcome,
    time_label,
)
from kbayes.terms import (
    LEVEL_UNITS,
    TERMS,
    extend_terms,
    parse_covariates,
    parse_terms,
    term_coefficient,
)

SCHEMA_VERSION = 1
MODELS_DIR = files("kbayes") / "models"


#: Spec tables an ``extends`` spec merges into its parent's, key by key.
MERGED_TABLES = ("constants", "units", "terms", "priors", "derived", "estimands", "covariates")

#: Parameters each level needs besides its term coefficients.
LEVEL_PARAMETERS: dict[str, tuple[str, ...]] = {
    "mrs": ("alpha0", "a", "a_session", "sigma_mrs"),
    "glutamate": ("beta0", "u", "e"),
    "improvement": ("gamma0", "v", "sigma_y"),
    "items": ("theta0", "w", "w_session", "r", "item_loc", "cutpoints"),
}
#: Deterministic quantities a level provides to estimand expressions.
LEVEL_OUTPUTS: dict[str, tuple[str, ...]] = {
    "items": ("imp_reference_female", "imp_reference_male", "imp_active_female", "imp_active_male"),
}
LEVELS = tuple(LEVEL_PARAMETERS)
#: Random effects the model builder can integrate out of the likelihood exactly (normal
#: offsets with a numeric mean, linear-Gaussian in the fMRS level), per level.
INTEGRABLE: dict[str, tuple[str, ...]] = {
    "mrs": ("a", "a_session"),
    "glutamate": ("u", "e"),
    "improvement": ("v",),
}
DELTA_SOURCES = ("latent", "observed", "two_stage")
#: What one session per participant cannot tell apart, per trial design (``design``): these
#: effects (a_session from a, e from u, v from the residual, w_session from w) and the terms
#: with these parts (period: constant) are left out, their SDs constants 0 (so estimand
#: expressions keep their meaning: the kept effect or the residual carries that variance).
UNSEPARABLE: dict[str, dict[str, tuple[str, ...]]] = {
    "crossover": {"effects": (), "parts": ()},
    "parallel": {"effects": ("a_session", "e", "v", "w_session"), "parts": ("period",)},
}
#: nutpie's mass-matrix adaptation per design, unless the spec sets ``adaptation``: in a
#: parallel trial the improvement intercept and glutamate slope can be correlated 0.99
#: (docs/calibration.md), a ridge a diagonal mass matrix crawls along. A spec with several
#: pretreatments or rating times adapts low-rank in either design (docs/calibration.md).
ADAPTATION = {"crossover": "diag", "parallel": "low_rank"}
#: NUTS's target acceptance per design, unless the spec sets ``target_accept`` (a fit's
#: ``target_accept`` overrides it): in a parallel trial 0.9 left 5 of 100 SBC fits with
#: divergences, 0.95 none (docs/calibration.md).
TARGET_ACCEPT = {"crossover": 0.9, "parallel": 0.95}
TOP_KEYS = {
    "schema_version": int,
    "extends": str,
    "name": str,
    "description": str,
    "levels": list,
    "delta": str,
    "first_stage": str,
    "likelihood": str,
    "profile": str,
    "measurement_error": bool,
    "correlated_effects": bool,
    "integrate": list,
    "ci_prob": float,
    "constants": dict,
    "units": dict,
    "terms": dict,
    "covariates": dict,
    "priors": dict,
    "derived": dict,
    "estimands": dict,
    "questions": list,
    "design": str,
    "adaptation": str,
    "target_accept": float,
    "conditions": list,
    "outcome": str,
    "times_h": list,
}
#: Keys of ``[units]``: the TrialConfig names whose units a spec's numbers are in.
UNIT_KEYS = ("metabolite", "scale")
PRIOR_META = {"distribution", "dims", "centered", "transform"}
#: Dims a prior may use (the coords the model builder makes).
DIMS = ("participant", "session", "mrs_obs", "item", "cutpoint", "item_obs", "uv")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed, validated model specification (see ``models/README.md``)."""

    name: str
    description: str
    levels: tuple[str, ...]
    delta: str | None
    first_stage: str | None
    likelihood: str
    profile: str
    measurement_error: bool
    correlated_effects: bool
    integrate: tuple[str, ...]
    ci_prob: float
    constants: dict[str, float]
    terms: dict[str, tuple[str, ...]]
    priors: dict[str, Prior]
    derived: dict[str, str]
    estimands: dict[str, Estimand]
    hash: str = field(repr=False)
    source: dict = field(repr=False, compare=False)
    #: Covariates the terms use (data columns), each with its ``[covariates.NAME]`` settings.
    covariates: dict[str, dict] = field(default_factory=dict)
    #: Coefficients whose prior is their level's ``[priors.default.LEVEL]``.
    defaulted: tuple[str, ...] = ()
    #: The metabolite and rating scale (TrialConfig names) whose units the constants, priors
    #: and ROPEs are in (``[units]``); a trial named otherwise is refused.
    units: dict[str, str] = field(default_factory=dict)
    #: The trial's questions, answered in words in the report's summary.
    questions: tuple[Question, ...] = ()
    #: The trial design the model is for (``UNSEPARABLE``), and what that design left out.
    design: str = "crossover"
    dropped: tuple[str, ...] = ()
    #: nutpie's mass-matrix adaptation (``"diag"`` or ``"low_rank"``; :data:`ADAPTATION`).
    adaptation: str = "diag"
    #: NUTS's default target acceptance (:data:`TARGET_ACCEPT`).
    target_accept: float = 0.9
    #: The pretreatments of a trial with more than two conditions (``conditions`` minus the
    #: reference; :meth:`for_trial`): each has its own effects, a ``condition`` dim over
    #: them; empty with two conditions.
    actives: tuple[str, ...] = ()
    #: What the improvement level models (:data:`OUTCOMES`), and a trajectory's rating
    #: times (hours from infusion start; :meth:`for_trial`): its coefficients have a
    #: ``time`` dim.
    outcome: str = "day1"
    times_h: tuple[float, ...] = ()

    @property
    def categorical(self) -> dict[str, tuple[str, ...]]:
        """Categorical covariate -> its coded levels (the levels but the reference): the
        coords of the dim, named as the covariate, of its terms' coefficients. With several
        pretreatments, ``condition`` too (its coded levels: :attr:`actives`)."""
        out = {
            name: tuple(level for level in how["levels"] if level != how["reference"])
            for name, how in self.covariates.items()
            if "levels" in how
        }
        return out | ({CONDITION: self.actives} if self.actives else {})

    @property
    def covariate_coefficients(self) -> tuple[str, ...]:
        """Coefficients of the terms with a data covariate (``gamma_age``, ``gamma_site``)."""
        return tuple(
            self.coefficient(level, t)
            for level, terms in self.terms.items()
            for t in terms
            if any(part in self.covariates for part in t.split(":"))
        )

    def term_units(self) -> dict[str, str]:
        """Coefficient name -> its unit (a template, see :data:`LEVEL_UNITS`), per what its
        label says (per unit of the covariate, per level)."""
        return {self.coefficient(level, t): LEVEL_UNITS[level]
                for level, terms in self.terms.items() for t in terms}  # fmt: skip

    @property
    def categorical_coefficients(self) -> dict[str, str]:
        """Coefficient of a term with a categorical part -> that covariate (the coefficient
        has its dim; estimands name its levels ``<coefficient>_<level>``, e.g.
        ``gamma_site_B``)."""
        return {
            self.coefficient(level, t): part
            for level, terms in self.terms.items()
            for t in terms
            for part in t.split(":")
            if part in self.categorical
        }

    def level_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The levels of each categorical coefficient in ``params`` as ``<coefficient>_<level>``:
        from its last axis (draws, arrays), or from a :attr:`kbayes.Truth.effects` entry
        ``{level: effect}`` (levels not named: 0) expressed in this spec's coding."""
        out = {}
        for name, covariate in self.categorical_coefficients.items():
            if name not in params or covariate == CONDITION:
                continue
            value, how = params[name], self.covariates[covariate]
            if isinstance(value, Mapping):
                effects = {level: value.get(level, 0.0) for level in how["levels"]}
                treatment = how["coding"] == "treatment"
                base = effects[how["reference"]] if treatment else np.mean(list(effects.values()))
            for j, level in enumerate(self.categorical[covariate]):
                level_value = effects[level] - base if isinstance(value, Mapping) else value[..., j]
                out[level_name(name, level)] = level_value
        return out

    @property
    def hierarchical(self) -> tuple[str, ...]:
        """Priors with a hyperprior (the random effects, e.g. ``a``, ``u``), in spec order."""
        return tuple(
            name
            for name, p in self.priors.items()
            if any(isinstance(v, Prior) for v in p.parameters.values())
        )

    def term_labels(self) -> dict[str, str]:
        """Coefficient name -> its term's label (a template, see :data:`TERMS`; a covariate
        term's says per what unit of the covariate)."""
        labels = {}
        for level, terms in self.terms.items():
            for t in terms:
                if t in TERMS[level]:
                    labels[TERMS[level][t].coefficient] = TERMS[level][t].label
                else:
                    unit = " x ".join(self._unit(part) for part in t.split(":"))
                    by = "by" if any(part in self.categorical for part in t.split(":")) else "per"
                    labels[self.coefficient(level, t)] = f"{level} {by} {unit}"
        return labels

    def _unit(self, part: str) -> str:
        if part not in self.covariates:
            return part
        if part in self.categorical:
            how = self.covariates[part]
            vs = how["reference"] if how["coding"] == "treatment" else "the mean over levels"
            return f"{part} (vs {vs})"
        scale = self.covariates[part].get("scale")
        if scale == "sd":
            return f"SD of {part}"
        return f"{scale:g} units of {part}" if scale else f"unit of {part}"

    def coefficient(self, level: str, term: str) -> str:
        """Name of the coefficient of ``term`` at ``level``."""
        return term_coefficient(level, term)

    def for_design(self, design: str) -> ModelSpec:
        """This spec for a trial of ``design`` (``"crossover"`` or ``"parallel"``: what one
        session per participant cannot separate left out, see :data:`UNSEPARABLE`);
        ``self`` if it is for that design already."""
        if design == self.design:
            return self
        return parse_spec(self.source | {"design": design}, origin=f"{self.name} ({design})")

    def for_trial(self, config: Any) -> ModelSpec:
        """This spec for a trial of ``config`` (a :class:`~kbayes.TrialConfig`): for its
        design (:meth:`for_design`); with more than two conditions, one effect per
        pretreatment (:attr:`actives`); a trajectory at the config's rating times. ``self``
        if it is for that trial already."""
        spec = self.for_design(config.design)
        actives = tuple(config.conditions[1:]) if len(config.conditions) > 2 else ()
        hours = tuple(config.rating_times_h) if spec.outcome == "trajectory" else ()
        if actives == spec.actives and hours == spec.times_h:
            return spec
        source = {k: v for k, v in spec.source.items() if k not in ("conditions", "times_h")}
        source |= {"conditions": list(config.conditions)} if actives else {}
        source |= {"times_h": list(hours)} if hours else {}
        return parse_spec(source, origin=f"{spec.name} ({', '.join(config.conditions)})")

    @property
    def index_dims(self) -> dict[str, tuple[str, ...]]:
        """The spec's index dims and their levels: ``condition`` (several pretreatments) and
        ``time`` (a trajectory's rating times, :func:`~kbayes.index_dims.time_label`)."""
        dims = {CONDITION: self.actives, TIME: tuple(time_label(h) for h in self.times_h)}
        return {d: levels for d, levels in dims.items() if levels}

    @property
    def coefficient_dims(self) -> dict[str, tuple[str, ...]]:
        """The coefficients with index dims, and those dims (their priors' order)."""
        index = self.index_dims
        return {name: own for name, prior in self.priors.items()
                if (own := tuple(d for d in prior.dims or () if d in index))}  # fmt: skip

    @functools.cached_property
    def estimand_dims(self) -> dict[str, tuple[str, ...]]:
        """The index dims each estimand depends on (through the coefficients it uses)."""
        exprs = [*self.derived.items(), *((k, e.expr) for k, e in self.estimands.items())]
        found = dependent_dims(self.coefficient_dims, exprs, list(self.index_dims))
        return {name: found[name] for name in self.estimands}

    def with_priors(self, **priors: Prior | Mapping) -> ModelSpec:
        """A new spec (new hash) with these priors replaced or added, e.g.
        ``spec.with_priors(beta_N=Prior("Normal", mu=0, sigma=0.02))``."""
        tables = {k: prior_table(v) if isinstance(v, Prior) else dict(v) for k, v in priors.items()}
        return self._changed(priors=tables)

    def with_terms(self, **terms: list[str] | str) -> ModelSpec:
        """A new spec (new hash) with these levels' terms replaced (a list or a formula,
        ``spec.with_terms(improvement="... + age")``: ``...`` stands for the current terms)."""
        return self._changed(terms=terms)

    def with_covariates(self, **settings: Mapping[str, Any]) -> ModelSpec:
        """A new spec (new hash) with these ``[covariates.NAME]`` tables replaced or added,
        e.g. ``spec.with_covariates(site={"levels": ["A", "B"], "coding": "sum"})``."""
        return self._changed(covariates=settings)

    def _changed(self, **tables: Mapping[str, Any]) -> ModelSpec:
        """This spec with ``tables`` merged in as a spec that extends it merges its own."""
        kept = {k: self.source[k] for k in ("name", "description") if k in self.source}
        return parse_spec(_extend(copy.deepcopy(self.source), kept | tables), origin=self.name)

    def parameters(self) -> set[str]:
        """Names available to estimand expressions (before constants and derived values):
        the priors' variables, their hyperpriors' (``u_sigma``), the levels' parameters and
        outputs, the coefficients and a categorical coefficient's levels."""
        names = set(self.priors) | hyperprior_names(self.priors)
        for level in self.levels:
            names.update(p for p in LEVEL_PARAMETERS[level] if p not in self.dropped)
            names.update(LEVEL_OUTPUTS.get(level, ()))
            names.update(self.coefficient(level, t) for t in self.terms.get(level, ()))
        return names | set(self.level_values({c: {} for c in self.categorical_coefficients}))

    def estimand_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate every estimand on ``params`` (floats, arrays or xarray objects), one
        value per row of :attr:`estimand_rows`.

        Floats are evaluated as numpy floats, so an estimand undefined at these values (a
        share of a total effect of 0, as under a null truth) is NaN or inf, not an error.
        """
        params = {k: np.float64(v) if isinstance(v, float | int) else v for k, v in params.items()}
        if not self.index_dims:
            return self._evaluated(params)
        ratios = {n for n, e in self.estimands.items() if e.unit == "odds ratio"}
        return indexed_values(self._evaluated, params, self.coefficient_dims, self.index_dims,
                              self.estimand_dims, ratios)  # fmt: skip

    @functools.cached_property
    def estimand_rows(self) -> tuple[str, ...]:
        """The names :meth:`estimand_values` gives, in order: each estimand, or with index
        dims one per level (``ntx_glu[nalmefene]``, ``ntx_imp_total[naltrexone, 4 h]``)
        and per contrast between pretreatments (``ntx_glu[nalmefene vs naltrexone]``)."""
        if not self.index_dims:
            return tuple(self.estimands)
        return tuple(row for row, *_ in estimand_cells(self.estimand_dims, self.index_dims))

    def estimand_of(self, row: str) -> Estimand:
        """The estimand of one of :attr:`estimand_rows` (``ntx_glu[nalmefene]``: ``ntx_glu``);
        a KeyError for another name."""
        if row not in self.estimand_rows:
            raise KeyError(row)
        return self.estimands[row.partition("[")[0]]

    def contrasts(self, name: str) -> list[tuple[str, str, str, bool]]:
        """The contrasts between pretreatments of an estimand with a condition dim
        (:func:`kbayes.index_dims.contrasts`; a ratio for an odds ratio)."""
        return contrasts(self.actives, self.estimands[name].unit == "odds ratio")

    def _evaluated(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Every estimand on ``params`` (one value each; see :meth:`estimand_values`)."""
        scope: dict[str, Any] = {**self.constants, **params, **self.level_values(params)}
        if self.likelihood == "normal":
            scope.setdefault("nu", np.inf)
        out = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, expr in self.derived.items():
                scope[name] = evaluate(expr, scope)
            for name, est in self.estimands.items():
                out[name] = scope[name] = evaluate(est.expr, scope)
        return out

    def to_toml_dict(self) -> dict:
        """The spec as plain data (what was parsed), e.g. to store in a result."""
        return self.source


def hyperprior_names(priors: Mapping[str, Prior]) -> set[str]:
    """The variables of the priors' hyperpriors (``u_sigma``: the SD of ``u``)."""
    return {f"{name}_{key}" for name, prior in priors.items()
            for key, value in prior.parameters.items() if isinstance(value, Prior)}  # fmt: skip


def level_name(coefficient: str, level: str) -> str:
    """The name estimands give one coded level of a categorical coefficient (``gamma_site_B``)."""
    return f"{coefficient}_{level}"


# --- parsing ---------------------------------------------------------------------------
def _prior(key: str, table: Any, errors: list[str], dims_allowed=DIMS) -> Prior | None:
    if not isinstance(table, dict) or "distribution" not in table:
        errors.append(f"priors.{key}: expected a table with a 'distribution' key")
        return None
    params = {}
    for name, value in table.items():
        if name in PRIOR_META:
            continue
        if isinstance(value, dict):
            value = _prior(f"{key}.{name}", value, errors, dims_allowed)
        params[name] = value
    dims = table.get("dims")
    if dims is not None and (
        not isinstance(dims, list)
        or not all(isinstance(d, str) and d in dims_allowed for d in dims)
    ):
        errors.append(
            f"priors.{key}.dims: expected a list of dim names from {dims_allowed}, got {dims!r}"
        )
        return None
    try:
        return Prior(
            table["distribution"],
            dims=tuple(dims) if dims else None,
            centered=table.get("centered", True),
            transform=table.get("transform"),
            **params,
        )
    except Exception as exc:  # pymc_extras raises several types for a bad prior
        errors.append(f"priors.{key}: {exc}")
        return None


def _extend(parent: dict, child: dict) -> dict:
    """The spec ``child`` (which says ``extends``) resolved over ``parent``: its tables
    (:data:`MERGED_TABLES`) add to or replace the parent's key by key (``[priors.default]``
    level by level), other keys replace the parent's; the parent's name and description are
    not inherited."""
    out = {k: v for k, v in parent.items() if k not in ("name", "description")}
    for key, value in child.items():
        if key == "extends":
            continue
        if key == "terms" and isinstance(value, dict):
            out[key] = extend_terms(out.get(key, {}), value)
        elif key in MERGED_TABLES and isinstance(value, dict):
            merged = {**out.get(key, {}), **value}
            if key == "priors" and isinstance(value.get("default"), dict):  # level by level
                merged["default"] = {**out.get(key, {}).get("default", {}), **value["default"]}
            out[key] = merged
        else:
            out[key] = value
    return out


def prior_table(prior: Prior) -> dict[str, Any]:
    """A Prior as a spec's ``[priors.NAME]`` table (the inverse of reading one)."""
    table: dict[str, Any] = {"distribution": prior.distribution}
    for name, value in prior.parameters.items():
        if isinstance(value, Prior):
            table[name] = prior_table(value)
        else:
            table[name] = np.asarray(value).tolist()
    if prior.dims:
        table["dims"] = list(prior.dims)
    if not prior.centered:
        table["centered"] = False
    if prior.transform:
        table["transform"] = prior.transform
    return table


def _canonical_hash(source: dict) -> str:
    text = json.dumps(source, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def parse_spec(source: dict, origin: str = "<dict>") -> ModelSpec:
    """Validate a spec given as plain data (as read from TOML) and freeze it."""
    errors: list[str] = []
    for key, value in source.items():
        if key not in TOP_KEYS:
            errors.append(f"{key}: unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
        elif not isinstance(value, TOP_KEYS[key]) and not (
            TOP_KEYS[key] is float and isinstance(value, int)
        ):
            errors.append(f"{key}: expected {TOP_KEYS[key].__name__}, got {value!r}")
    if errors:
        raise SpecError(f"spec {origin}:\n  " + "\n  ".join(errors))
    if "extends" in source:
        try:
            parent = load_spec(source["extends"])
        except SpecError as exc:
            raise SpecError(f"spec {origin}: extends: {exc}") from None
        source = _extend(parent.source, source)
    if source.get("schema_version") != SCHEMA_VERSION:
        errors.append(f"schema_version: expected {SCHEMA_VERSION}")
    levels = tuple(source.get("levels", ()))
    errors += [
        f"levels: unknown level {lv!r} (known: {', '.join(LEVELS)})"
        for lv in levels
        if lv not in LEVELS
    ]
    if not levels:
        errors.append("levels: at least one level is needed")
    delta = source.get("delta")
    if "improvement" in levels and delta not in DELTA_SOURCES:
        errors.append(
            f"delta: expected one of {DELTA_SOURCES} for a model with an improvement level"
        )
    first_stage = source.get("first_stage")
    stage1_params: set[str] = set()
    if delta == "two_stage":
        try:
            stage1 = load_spec(first_stage or "")
            stage1_params = stage1.parameters() - set(stage1.priors) | {
                p for p in stage1.priors if p.startswith("beta")
            }
        except SpecError as exc:
            errors.append(f"first_stage: {exc}")
    if delta == "latent" and not {"mrs", "glutamate", "improvement"} <= set(levels):
        errors.append("delta: 'latent' needs the levels mrs, glutamate and improvement")
    checks = {
        "likelihood": ("student_t", "normal"),
        "profile": ("step", "ramp"),
    }
    for key, allowed in checks.items():
        if source.get(key, allowed[0]) not in allowed:
            errors.append(f"{key}: {source[key]!r} is not one of {allowed}")
    ci_prob = float(source.get("ci_prob", 0.95))
    if not 0 < ci_prob < 1:
        errors.append("ci_prob: must be between 0 and 1")
    terms, used = {}, set()
    for level, value in source.get("terms", {}).items():
        if level not in TERMS or level not in levels:
            errors.append(f"terms.{level}: not a level of this model with terms")
            continue
        terms[level], covariates = parse_terms(level, value, errors, reserved=DIMS)
        used |= covariates
    design = source.get("design", "crossover")
    if design not in UNSEPARABLE:
        errors.append(f"design: expected one of {tuple(UNSEPARABLE)}, got {design!r}")
        design = "crossover"
    left_out, extra_constants = UNSEPARABLE[design], {}
    target_accept = source.get("target_accept", TARGET_ACCEPT[design])
    if not isinstance(target_accept, int | float) or not 0 < target_accept < 1:
        errors.append(f"target_accept: must be between 0 and 1, got {target_accept!r}")
        target_accept = TARGET_ACCEPT[design]
    dropped = [term_coefficient(lv, t) for lv, ts in terms.items() for t in ts
               if set(t.split(":")) & set(left_out["parts"])]  # fmt: skip
    terms = {lv: tuple(t for t in ts if not set(t.split(":")) & set(left_out["parts"]))
             for lv, ts in terms.items()}  # fmt: skip
    if design != "crossover" and source.get("correlated_effects"):
        errors.append(f"correlated_effects: a {design} trial cannot separate u from v")
    covariates = parse_covariates(source.get("covariates", {}), used, errors)
    categorical = {name for name, how in covariates.items() if "levels" in how}
    actives = parse_actives(source.get("conditions"), levels, errors)
    categorical |= {CONDITION} if actives else set()
    outcome, times_h = parse_outcome(source, levels, errors)
    indexed = bool(actives) or len(times_h) > 1  # more coefficients along one ridge
    adaptation = source.get("adaptation", "low_rank" if indexed else ADAPTATION[design])
    if adaptation not in ("diag", "low_rank"):
        errors.append(f"adaptation: expected 'diag' or 'low_rank', got {adaptation!r}")
    dims_allowed = (*DIMS, *sorted(categorical), *((TIME,) if times_h else ()))
    coefficient_dims = {}  # a categorical term's coefficient has the dim of its levels
    for level, ts in terms.items():
        for t in ts:
            if cats := [p for p in t.split(":") if p in categorical]:
                coefficient_dims[term_coefficient(level, t)] = tuple(cats)
            if len(cats) > 1:
                errors.append(f"terms.{level}: {t!r} has more than one categorical covariate")
    if times_h:  # a trajectory: each improvement coefficient per rating time
        for name in ("gamma0", *(term_coefficient("improvement", t) for t in terms["improvement"])):
            coefficient_dims[name] = (TIME, *coefficient_dims.get(name, ()))
    priors, defaults = {}, {}
    for key, table in source.get("priors", {}).items():
        if key == "default":  # [priors.default.LEVEL]: coefficients without a table of their own
            for level, t in table.items() if isinstance(table, dict) else ():
                if level not in terms:
                    errors.append(f"priors.default.{level}: not a level of this model with terms")
                elif (prior := _prior(f"default.{level}", t, errors)) is not None:
                    defaults[level] = prior
            continue
        prior = _prior(key, table, errors, dims_allowed)
        if prior is not None:
            priors[key] = prior
    defaulted = []
    for level, ts in terms.items():
        for t in ts:
            name = term_coefficient(level, t)
            if name not in source.get("priors", {}) and level in defaults:
                priors[name] = defaults[level]
                defaulted.append(name)
    for name, dims in coefficient_dims.items():
        if name in priors and priors[name].dims != dims:
            if priors[name].dims is not None:
                errors.append(f"priors.{name}.dims: expected {list(dims)} (its levels), or none")
                continue
            priors[name] = priors[name].deepcopy()
            priors[name].dims = dims
    cut = priors.get("cutpoints")
    if cut is not None and (cut.distribution != "Normal" or set(cut.parameters) != {"mu", "sigma"}):
        errors.append(
            "priors.cutpoints: must be a Normal with mu (one per cutpoint) and sigma; "
            "the model orders them with an ordered transform"
        )
    needed = {p for lv in levels if lv in LEVEL_PARAMETERS for p in LEVEL_PARAMETERS[lv]
              if p not in left_out["effects"]}  # fmt: skip
    dropped += sorted(e for e in left_out["effects"] if e in source.get("priors", {}))
    for name in dropped:  # with its hyperprior SD, which becomes the constant 0
        if isinstance(prior := priors.pop(name, None), Prior):
            extra_constants |= {h: 0.0 for h in hyperprior_names({name: prior})}
    needed |= {term_coefficient(lv, t) for lv, ts in terms.items() for t in ts}
    if "improvement" in levels and source.get("likelihood", "student_t") == "student_t":
        needed.add("nu")
    if source.get("correlated_effects"):
        if not {"glutamate", "improvement"} <= set(levels):
            errors.append("correlated_effects: needs the glutamate and improvement levels")
        needed.add("uv_rho")
    integrate = tuple(e for e in source.get("integrate", ()) if e not in left_out["effects"])
    integrable = {e for lv in levels for e in INTEGRABLE.get(lv, ())}
    for name in integrate:
        prior = priors.get(name)
        if name not in integrable:
            errors.append(
                f"integrate: {name!r} cannot be integrated out in this model "
                f"(can: {', '.join(sorted(integrable)) or 'none'})"
            )
        elif prior is not None and (
            prior.distribution != "Normal"
            or not isinstance(prior.parameters.get("mu"), int | float)
        ):
            errors.append(f"integrate: {name!r} needs a Normal prior with a numeric mu")
    if len({"u", "e"} & set(integrate)) == 1 and "e" not in left_out["effects"]:
        errors.append("integrate: 'u' and 'e' are integrated out together or not at all")
    if source.get("correlated_effects") and len({"u", "v"} & set(integrate)) == 1:
        errors.append("integrate: correlated 'u' and 'v' are integrated out together or not at all")
    given = set(source.get("priors", {})) - {"default"} - set(dropped)  # bad: reported above
    given |= set(defaulted)
    errors += [
        f"priors.{p}: missing (needed by this model's levels and terms; a term's coefficient "
        f"may take its level's [priors.default.LEVEL])"
        for p in sorted(needed - given)
    ]
    errors += [f"priors.{p}: not a parameter of this model" for p in sorted(given - needed)]
    constants = dict(extra_constants)
    for key, value in source.get("constants", {}).items():
        if not isinstance(value, int | float) or not math.isfinite(value):
            errors.append(f"constants.{key}: expected a finite number, got {value!r}")
        constants[key] = float(value) if isinstance(value, int | float) else value
    units = source.get("units", {})
    errors += [
        f"units.{k}: expected one of {UNIT_KEYS} with a name, got {k} = {v!r}"
        for k, v in units.items()
        if k not in UNIT_KEYS or not isinstance(v, str)
    ]
    outputs = {o for lv in levels for o in LEVEL_OUTPUTS.get(lv, ())}
    known = needed | outputs | set(constants) | stage1_params | hyperprior_names(priors)
    if "improvement" in levels and source.get("likelihood", "student_t") == "normal":
        known.add("nu")  # inf: a normal likelihood is the Student-t's limit
    known |= {level_name(name, level) for name, dims in coefficient_dims.items()
              if dims[0] in covariates for level in covariates[dims[0]].get("levels", ())
              if level != covariates[dims[0]]["reference"]}  # fmt: skip
    derived = {}
    for key, expr in source.get("derived", {}).items():
        errors += check_expr(f"derived.{key}", expr, known)
        derived[key] = expr
        known.add(key)
    estimands = parse_estimands(source.get("estimands", {}), known, constants, errors)
    questions = parse_questions(source.get("questions", []), estimands, constants, errors)
    if errors:
        raise SpecError(f"spec {origin}:\n  " + "\n  ".join(errors))
    return ModelSpec(
        name=source.get("name", Path(origin).stem if origin.endswith(".toml") else origin),
        description=source.get("description", ""),
        levels=levels,
        delta=delta,
        first_stage=first_stage,
        likelihood=source.get("likelihood", "student_t"),
        profile=source.get("profile", "step"),
        measurement_error=source.get("measurement_error", True),
        correlated_effects=source.get("correlated_effects", False),
        integrate=integrate,
        ci_prob=ci_prob,
        constants=constants,
        terms=terms,
        priors=priors,
        derived=derived,
        estimands=estimands,
        hash=_canonical_hash(source),
        source=source,
        covariates=covariates,
        defaulted=tuple(defaulted),
        units=dict(units),
        questions=questions,
        design=design,
        dropped=tuple(dropped),
        adaptation=adaptation,
        target_accept=float(target_accept),
        actives=actives,
        outcome=outcome,
        times_h=times_h,
    )


_PARSED: dict[str, ModelSpec] = {}


def spec_from_source(source: dict) -> ModelSpec:
    """:func:`parse_spec` of a spec's ``source`` (``ModelSpec.source``), once per process:
    workers are sent specs as plain data."""
    key = _canonical_hash(source)
    if key not in _PARSED:
        _PARSED[key] = parse_spec(source, origin=source.get("name", "<source>"))
    return _PARSED[key]


def builtin_specs() -> list[str]:
    """Names of the specs shipped with kbayes."""
    return sorted(
        p.name.removesuffix(".toml") for p in MODELS_DIR.iterdir() if p.name.endswith(".toml")
    )


def load_spec(name_or_path: str | Path | ModelSpec) -> ModelSpec:
    """Load and validate a model spec: a built-in name (``"joint"``) or a path to a TOML file.

    Raises
    ------
    kbayes.SpecError
        Unknown name (the message lists the valid ones), unreadable TOML, or every problem
        found in the file, each naming its key.
    """
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    text_name = str(name_or_path)
    if text_name.endswith(".toml") or Path(text_name).is_file():
        path = Path(text_name)
        if not path.is_file():
            raise SpecError(f"spec file {text_name!r} does not exist")
        raw = path.read_text()
    else:
        if text_name not in builtin_specs():
            raise SpecError(
                f"unknown model {text_name!r}; built-in models: {', '.join(builtin_specs())} "
                "(or give a path to a .toml spec)"
            )
        raw = (MODELS_DIR / f"{text_name}.toml").read_text()
    try:
        source = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec {text_name!r}: not valid TOML: {exc}") from None
    return parse_spec(source, origin=text_name)
