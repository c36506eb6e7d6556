"""Design priors: distributions of truths, one drawn per replicate of a power run.

A fixed :class:`~kbayes.Truth` gives power; a distribution of truths gives assurance
(O'Hagan, Stevens & Campbell 2005, doi:10.1002/pst.175): :class:`PriorTruth` (fields
from ``pymc_extras.prior.Prior`` objects), :class:`PredictiveTruth` (a predictive
distribution, e.g. of a meta-analysis), :class:`PosteriorTruth` (draws of a fitted
posterior). Each has a ``key`` (a digest of what it draws from), part of the seeds of a
design point, and ``draw(seed)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from kbayes.design import Truth
from kbayes.index_dims import INDEX_DIMS
from kbayes.replicates import digest


class DesignPrior(Protocol):
    """A distribution of truths: ``draw(seed)`` gives the Truth of one replicate."""

    key: str

    def draw(self, seed: np.random.SeedSequence) -> Truth: ...


@dataclasses.dataclass(frozen=True)
class FixedTruth:
    """Every replicate has the same :class:`~kbayes.Truth` (power)."""

    truth: Truth

    @property
    def key(self) -> str:
        return digest(self.truth.params)

    def draw(self, seed: np.random.SeedSequence) -> Truth:
        return self.truth


@dataclasses.dataclass(frozen=True)
class PriorTruth:
    """Truth fields drawn from ``pymc_extras.prior.Prior`` objects over a base Truth.

    ``PriorTruth({"beta_N": Prior("Normal", mu=-0.02, sigma=0.01)})`` sets ``beta_N`` of
    each replicate's Truth to a draw (its units: those of the Truth field); the other fields
    are ``base``'s. Priors must have numeric parameters (no hyperpriors).
    """

    priors: Mapping[str, Any]
    base: Truth = dataclasses.field(default_factory=Truth)

    @property
    def key(self) -> str:
        return digest(
            {"base": self.base.params, **{k: p.to_dict() for k, p in self.priors.items()}}
        )

    def draw(self, seed: np.random.SeedSequence) -> Truth:
        rng = np.random.default_rng(seed)
        values = {name: float(_prior_sampler(p)(rng)) for name, p in sorted(self.priors.items())}
        return self.base.updated(values)


@dataclasses.dataclass(frozen=True)
class PredictiveTruth:
    """One Truth field from a predictive distribution, e.g. a meta-analysis (assurance).

    ``source.predictive_draws(1, rng)`` (e.g. :meth:`kbayes.MetaAnalysis.predictive_draws`)
    is drawn per replicate and mapped by ``transform`` onto the scale of Truth field
    ``field``: a meta-analytic draw on its own stated scale (say, MADRS points of the
    naltrexone effect) must be put on the field's scale explicitly.
    """

    source: Any
    field: str
    transform: Callable[[float], float] = float
    base: Truth = dataclasses.field(default_factory=Truth)

    @property
    def key(self) -> str:
        draws = np.asarray(self.source.predictive_draws(256, 0))
        name = getattr(self.transform, "__name__", repr(self.transform))
        return digest({"base": self.base.params, "field": self.field, "t": name,
                      "draws": hashlib.sha256(draws.tobytes()).hexdigest()})  # fmt: skip

    def draw(self, seed: np.random.SeedSequence) -> Truth:
        value = self.source.predictive_draws(1, np.random.default_rng(seed))[0]
        return self.base.updated({self.field: float(self.transform(value))})


@dataclasses.dataclass(frozen=True)
class PosteriorTruth:
    """Truths from a fitted posterior: each replicate takes one posterior draw at random.

    Every Truth field that is a scalar posterior variable (the fields carry the model's
    names) is set from that draw, one with a value per pretreatment or rating time (a
    ``condition`` or ``time`` dim) as ``{level: value}``; the rest are ``base``'s.
    ``sigma_mrs`` is a :class:`~kbayes.Design` field and stays the design's.
    """

    dt: Any
    base: Truth = dataclasses.field(default_factory=Truth)

    def _table(self) -> pd.DataFrame:
        post = self.dt.posterior
        cols = {}
        for name in self.base.params:
            if name not in post.data_vars:
                continue
            da = post[name]
            if da.ndim == 2:
                cols[name] = da.values.reshape(-1)
            elif da.ndim == 3 and da.dims[2] in INDEX_DIMS:
                for level in da[da.dims[2]].values.tolist():
                    cols[f"{name}[{level}]"] = da.sel({da.dims[2]: level}).values.reshape(-1)
        return pd.DataFrame(cols)

    @property
    def key(self) -> str:
        table = self._table()
        digest = hashlib.sha256(table.to_numpy().tobytes()).hexdigest()
        return digest({"base": self.base.params, "cols": list(table), "draws": digest})

    def draw(self, seed: np.random.SeedSequence) -> Truth:
        table = self._table()
        row = table.iloc[int(np.random.default_rng(seed).integers(len(table)))]
        values: dict[str, Any] = {}
        for column, value in row.astype(float).items():
            name, _, level = column.partition("[")
            if level:
                values.setdefault(name, {})[level.removesuffix("]")] = value
            else:
                values[name] = value
        return self.base.updated(values)


def design_prior(truth: Any) -> DesignPrior:
    """A :class:`DesignPrior` from a Truth, a dict of Priors, a DataTree or a DesignPrior."""
    if isinstance(truth, Truth):
        return FixedTruth(truth)
    if isinstance(truth, Mapping):
        return PriorTruth(truth)
    if hasattr(truth, "draw") and hasattr(truth, "key"):
        return truth
    if hasattr(truth, "posterior"):
        return PosteriorTruth(truth)
    raise TypeError(
        f"truth must be a Truth, a dict of Priors, a fitted DataTree or a DesignPrior; got "
        f"{type(truth).__name__} (wrap a meta-analysis in PredictiveTruth(meta, field=...))"
    )


_SAMPLERS: dict[str, Callable] = {}


def _prior_sampler(prior: Any) -> Callable[[np.random.Generator], float]:
    """A compiled-once draw function of a Prior, reseeded per call."""
    key = json.dumps(prior.to_dict(), sort_keys=True)
    if key not in _SAMPLERS:
        import pytensor

        shared = pytensor.shared(np.random.default_rng())
        rv = prior.pymc_distribution.dist(**prior.parameters, rng=shared)
        fn = pytensor.function([], rv)

        def sample(rng: np.random.Generator) -> float:
            shared.set_value(rng, borrow=True)
            return fn()

        _SAMPLERS[key] = sample
    return _SAMPLERS[key]
