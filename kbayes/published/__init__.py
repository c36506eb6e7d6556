"""Registry of published results for ketamine and ketamine-plus-opioid-antagonist studies.

The numbers live in ``registry.toml`` beside this module, shipped as package data. Every
number there was read in the text of the named source; ``where`` names the section and
``secondary_source`` is set when the text read was not the article itself. Nothing in the
file is derived, rounded or inferred, and nothing here adds a number to it.

This module only reads the file. It adds short, stable *outcome keys* (:data:`OUTCOMES`)
that name one registry result, or a test statistic plus the effect estimate reported for
the same contrast, so that ``kb.reanalyse("jelen2025", outcome="madrs_day1")`` selects it.
An outcome key records judgements, not numbers from a source: which way a positive effect
points, which sign is a benefit, and a default clinically meaningful difference. Those are
stated in ``delta_reason`` and can be overridden in the call.

Examples
--------
>>> from kbayes import published
>>> published.studies().loc["jelen2025", "doi"]
'10.1038/s41591-025-03800-w'
>>> published.outcome("jelen2025", "madrs_day1").test.statistic
'F'
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Literal

import pandas as pd

__all__ = [
    "OUTCOMES",
    "Outcome",
    "Ref",
    "Result",
    "Study",
    "find",
    "outcome",
    "outcomes",
    "registry_text",
    "results",
    "studies",
    "study",
]

_RESULT_FIELDS = ("outcome", "statistic", "value", "where", "quote", "secondary_source", "notes")


@dataclass(frozen=True)
class Result:
    """One published number, verbatim, with where it was read and the source's citation.

    ``df``, ``p`` and ``n`` are set only when the registry gives them for this result;
    other registry fields (``pm``, ``denominator``, ``approximate``...) are in ``extra``.
    """

    study: str
    index: int
    outcome: str
    statistic: str
    value: Any
    where: str
    quote: str
    citation: str
    doi: str
    secondary_source: str = ""
    notes: str = ""
    df: Any = None
    p: float | None = None
    n: int | None = None
    extra: Mapping[str, Any] = MappingProxyType({})

    @property
    def source(self) -> str:
        """Where the number was read: section of the source, and a secondary source if any."""
        text = f"{self.study} [{self.index}] {self.where}"
        return f"{text}; read in {self.secondary_source}" if self.secondary_source else text


@dataclass(frozen=True)
class Study:
    """A registry study: citation, design and its results in registry order."""

    key: str
    citation: str
    doi: str
    design: str
    n: int | None
    population: str
    intervention: str
    comparator: str
    registration: str
    url: str
    notes: str
    results: tuple[Result, ...]


@dataclass(frozen=True)
class Ref:
    """A registry result named by its statistic and exact outcome text (not by position)."""

    statistic: str
    outcome: str


@dataclass(frozen=True)
class Outcome:
    """A short key for a reanalysable registry contrast, with the judgements it needs.

    Attributes
    ----------
    study, key : str
        Registry study key and the short outcome key.
    test : Ref
        The result carrying the test (F(1, df), t with df, or p).
    estimate : Ref or None
        The result carrying the effect estimate for the same contrast, if one is reported.
        Without it the effect is standardised (Cohen's d_z) from the test and ``n``.
    direction : {1, -1}
        Sign of the effect reported in the text (F carries no sign).
    effect : str
        What a positive value means, in words.
    scale : str
        Unit of the effect ("%", "d_z").
    benefit : {"positive", "negative"}
        Which sign is a benefit to patients.
    delta : float or None
        Default clinically meaningful difference on ``scale`` (signed: the direction the
        sceptic doubts and the enthusiast expects). A judgement, see ``delta_reason``.
    """

    study: str
    key: str
    test: Ref
    estimate: Ref | None
    direction: int
    effect: str
    scale: str
    benefit: Literal["positive", "negative"]
    delta: float | None
    delta_reason: str
    design: str = "crossover"


OUTCOMES: tuple[Outcome, ...] = (
    Outcome(
        study="jelen2025",
        key="madrs_day1",
        test=Ref("F", "MADRS reduction on day 1, condition-by-time interaction"),
        estimate=Ref(
            "percent",
            "reduction of ketamine antidepressant effect (MADRS, day after infusion) "
            "with naltrexone",
        ),
        direction=1,
        effect="attenuation of ketamine's day-1 MADRS reduction by naltrexone",
        scale="%",
        benefit="negative",
        delta=25.0,
        delta_reason=(
            "judgement: naltrexone removing a quarter of ketamine's day-1 antidepressant "
            "effect would matter clinically and mechanistically; pass delta= to change it"
        ),
    ),
    Outcome(
        study="jelen2025",
        key="glx_infusion",
        test=Ref(
            "F",
            "ACC Glx/tNAA increase during ketamine infusion, naltrexone vs placebo "
            "(condition effect)",
        ),
        estimate=None,
        direction=1,
        effect="attenuation of ketamine's ACC Glx/tNAA rise by naltrexone (standardised)",
        scale="d_z",
        benefit="negative",
        delta=0.5,
        delta_reason=(
            "judgement: a 'medium' standardised effect (Cohen 1988); no Glx/tNAA-unit "
            "estimate is reported; pass delta= to change it"
        ),
    ),
    Outcome(
        study="abdallah2018_13c",
        key="glutamine_enrichment",
        test=Ref("t", "13C glutamine enrichment, ketamine vs placebo"),
        estimate=Ref(
            "percent", "13C glutamine enrichment (glutamate-glutamine cycling), ketamine vs placebo"
        ),
        direction=1,
        effect="increase in prefrontal 13C glutamine enrichment with ketamine vs placebo",
        scale="%",
        benefit="positive",
        delta=None,
        delta_reason="no default: give delta= in % enrichment",
    ),
)


def registry_text() -> str:
    """The shipped ``registry.toml`` as text (its header states the provenance rules)."""
    return files(__name__).joinpath("registry.toml").read_text(encoding="utf-8")


def _result(study: Mapping[str, Any], index: int, raw: Mapping[str, Any]) -> Result:
    known = {k: raw.get(k, "") for k in _RESULT_FIELDS}
    extra = {k: v for k, v in raw.items() if k not in (*_RESULT_FIELDS, "df", "p", "n")}
    return Result(
        study=study["key"],
        index=index,
        citation=study["citation"],
        doi=study.get("doi", ""),
        df=raw.get("df"),
        p=raw.get("p"),
        n=raw.get("n"),
        extra=MappingProxyType(extra),
        **known,
    )


@cache
def _registry() -> Mapping[str, Study]:
    data = tomllib.loads(registry_text())
    out = {}
    for raw in data["study"]:
        rows = tuple(_result(raw, i, r) for i, r in enumerate(raw.get("result", [])))
        out[raw["key"]] = Study(
            key=raw["key"],
            citation=raw["citation"],
            doi=raw.get("doi", ""),
            design=raw.get("design", ""),
            n=raw.get("n"),
            population=raw.get("population", ""),
            intervention=raw.get("intervention", ""),
            comparator=raw.get("comparator", ""),
            registration=raw.get("registration", ""),
            url=raw.get("url", ""),
            notes=raw.get("notes", ""),
            results=rows,
        )
    return MappingProxyType(out)


def study(key: str) -> Study:
    """The registry study ``key``; an unknown key raises ``KeyError`` listing valid keys."""
    reg = _registry()
    if key not in reg:
        raise KeyError(f"no study {key!r} in the registry; known: {', '.join(reg)}")
    return reg[key]


def studies() -> pd.DataFrame:
    """List the registry, one row per study.

    Returns
    -------
    pandas.DataFrame
        Indexed by study key: citation, DOI, design, n, population, number of results, and
        the outcome keys usable with ``kb.reanalyse`` (empty when none is defined).
    """
    rows = [
        {
            "key": s.key,
            "citation": s.citation,
            "doi": s.doi,
            "design": s.design,
            "n": s.n,
            "population": s.population,
            "n_results": len(s.results),
            "outcomes": ", ".join(o.key for o in OUTCOMES if o.study == s.key),
        }
        for s in _registry().values()
    ]
    return pd.DataFrame(rows).set_index("key")


def results(study_key: str | None = None) -> pd.DataFrame:
    """Every registry result (or one study's), each row keeping its citation and DOI.

    Parameters
    ----------
    study_key : str, optional
        Restrict to one study.

    Returns
    -------
    pandas.DataFrame
        One row per result: study, index (position within the study), outcome, statistic,
        value, df, p, n, where, quote, secondary_source, notes, citation, doi.
    """
    chosen = [study(study_key)] if study_key else list(_registry().values())
    cols = ("study", "index", "outcome", "statistic", "value", "df", "p", "n", "where")
    cols += ("quote", "secondary_source", "notes", "citation", "doi")
    return pd.DataFrame(
        [{c: getattr(r, c) for c in cols} for s in chosen for r in s.results], columns=cols
    )


def outcomes(study_key: str | None = None) -> pd.DataFrame:
    """Outcome keys usable as ``kb.reanalyse(study, outcome=key)``.

    Returns
    -------
    pandas.DataFrame
        One row per key: study, key, effect (meaning of a positive value), scale, benefit
        sign, default meaningful difference ``delta`` and the reason for it.
    """
    cols = ("study", "key", "effect", "scale", "benefit", "delta", "delta_reason")
    rows = [o for o in OUTCOMES if study_key in (None, o.study)]
    return pd.DataFrame([{c: getattr(o, c) for c in cols} for o in rows], columns=cols)


def outcome(study_key: str, key: str) -> Outcome:
    """The outcome ``key`` of ``study_key``; an unknown key raises ``KeyError`` naming others."""
    study(study_key)
    for o in OUTCOMES:
        if (o.study, o.key) == (study_key, key):
            return o
    valid = [o.key for o in OUTCOMES if o.study == study_key]
    raise KeyError(
        f"no outcome key {key!r} for study {study_key!r}; "
        + (f"valid keys: {', '.join(valid)}" if valid else "this study has no outcome keys")
        + " (convert any other result with kbayes.published.convert.from_result)"
    )


def find(study_key: str, ref: Ref) -> Result:
    """The single result of ``study_key`` matching ``ref`` (statistic and exact outcome)."""
    hits = [
        r
        for r in study(study_key).results
        if (r.statistic, r.outcome) == (ref.statistic, ref.outcome)
    ]
    if len(hits) != 1:
        raise LookupError(f"{study_key}: {len(hits)} results match {ref}; expected exactly one")
    return hits[0]
