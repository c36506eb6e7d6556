r"""Converters from what papers report to an approximate normal likelihood of one effect.

Papers report an estimate with a CI, a t or F(1, df) statistic, a p-value, or a mean
difference with an SD. Each converter returns a :class:`Likelihood` N(estimate, se) on a
stated scale whose ``approximation`` says, in words, every step and assumption.

Whenever a test statistic is converted, the normal likelihood is matched to the *reported
test's p-value* (z is the standard-normal deviate with the same two-sided p), so a flat
prior reproduces the published p. With a reported effect estimate for the same contrast,
``SE = |estimate| / |z|`` (the test-based SE of Altman & Bland 2011); without one the effect
is standardised (Cohen's d_z = t / sqrt(n) for paired / crossover contrasts, Lakens 2013)
or, lacking n, expressed in SE units (z).

References
----------
Altman DG, Bland JM. How to obtain the confidence interval from a P value. BMJ
2011;343:d2090. doi:10.1136/bmj.d2090
Lakens D. Calculating and reporting effect sizes to facilitate cumulative science.
Front Psychol 2013;4:863. doi:10.3389/fpsyg.2013.00863
Senn S. Cross-over Trials in Clinical Research, 2nd ed. Wiley 2002. doi:10.1002/0470854596
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from scipy import stats

from kbayes import published
from kbayes.published import Result

Design = Literal["paired", "crossover", "parallel"]


@dataclass(frozen=True)
class Likelihood:
    """Approximate normal likelihood N(estimate, se) of one effect, with its provenance.

    Attributes
    ----------
    estimate, se : float
        Effect estimate and its standard error, on ``scale``.
    scale : str
        Unit of the effect: "%", "MADRS points", "d_z" (standardised by the SD of
        within-participant differences), "d" (pooled SD), or "z" (SE units).
    approximation : str
        Every step and assumption of the conversion, in words.
    effect : str
        What a positive value means.
    benefit : {"positive", "negative"}
        Which sign is a benefit to patients.
    citation, doi, source : str
        Where the numbers come from.
    """

    estimate: float
    se: float
    scale: str
    approximation: str
    effect: str = "effect"
    benefit: Literal["positive", "negative"] = "positive"
    citation: str = ""
    doi: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.estimate) and math.isfinite(self.se) and self.se > 0):
            raise ValueError(f"need a finite estimate and a finite se > 0, got {self}")
        if self.benefit not in ("positive", "negative"):
            raise ValueError(f"benefit must be 'positive' or 'negative', got {self.benefit!r}")

    @property
    def p_value(self) -> float:
        """Two-sided p of the Wald test of effect = 0 under this likelihood."""
        return float(2 * stats.norm.sf(abs(self.estimate) / self.se))


def t_from_f(f: float, df: int | tuple[int, int] | list[int], direction: int) -> tuple[float, int]:
    """Signed t and its df from F(1, df): ``t = direction * sqrt(F)``.

    An F with more than one numerator df tests several contrasts at once and has no single
    signed effect, so it is refused.
    """
    df1, df2 = (1, df) if isinstance(df, int | float) else tuple(df)
    if df1 != 1:
        raise ValueError(
            f"F({df1}, {df2}) tests {df1} contrasts at once and has no single signed effect; "
            "only F(1, df) converts to a likelihood"
        )
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1 (F carries no sign), got {direction!r}")
    return direction * math.sqrt(f), int(df2)


def p_from_t(t: float, df: float | None) -> float:
    """Two-sided p of t on ``df`` degrees of freedom (standard normal when ``df`` is None)."""
    ref = stats.norm if df is None else stats.t(df)
    return float(2 * ref.sf(abs(t)))


def from_estimate(estimate: float, se: float, *, scale: str, **info: Any) -> Likelihood:
    """Likelihood from an estimate and its reported standard error.

    ``info`` keywords (effect, benefit, citation, doi, source) go to :class:`Likelihood`.
    """
    text = f"normal likelihood N({estimate:.4g}, {se:.4g}) with the reported SE"
    return Likelihood(estimate, se, scale, text, **info)


def from_ci(
    estimate: float, lower: float, upper: float, *, scale: str, ci_prob: float = 0.95, **info: Any
) -> Likelihood:
    """Likelihood from an estimate and its confidence interval.

    ``SE = (upper - lower) / (2 z)`` with ``z = Φ⁻¹((1 + ci_prob) / 2)`` (1.960 for 95 %),
    assuming a symmetric Wald interval on ``scale``. A ratio (odds, risk, fold change)
    reported on its natural scale is asymmetric: pass its logarithms instead.
    """
    if not lower < estimate < upper:
        raise ValueError(f"need lower < estimate < upper, got {lower}, {estimate}, {upper}")
    z = stats.norm.isf((1 - ci_prob) / 2)
    se = (upper - lower) / (2 * z)
    text = (
        f"SE = (upper - lower) / (2 x {z:.3f}) = ({upper:.4g} - {lower:.4g}) / {2 * z:.3f} = "
        f"{se:.4g}, assuming a symmetric {ci_prob:.0%} Wald interval on this scale"
    )
    skew = abs((upper - estimate) - (estimate - lower)) / (upper - lower)
    if skew > 0.1:
        text += (
            f"; the interval is asymmetric ({skew:.0%} off centre): if it is a ratio, convert "
            "its logarithm"
        )
    return Likelihood(estimate, se, scale, text, **info)


def _df(df: float | None, n: int | None, n2: int | None, design: Design) -> tuple[Any, str]:
    if df is not None:
        return df, ""
    if n is None:
        return None, "no df or n: t treated as a standard-normal deviate (too narrow if small); "
    if design == "parallel":
        _need_n2(n2)
        return n + n2 - 2, f"df = n1 + n2 - 2 = {n + n2 - 2} assumed; "
    return n - 1, f"df = n - 1 = {n - 1} assumed (paired test); "


def _need_n2(n2: int | None) -> None:
    if n2 is None:
        raise ValueError("a parallel design needs both group sizes: n (group 1) and n2")


def _from_test(
    t: float,
    p: float,
    text: str,
    *,
    estimate: float | None,
    scale: str | None,
    n: int | None,
    n2: int | None,
    design: Design,
    p_reported: float | None,
    info: dict[str, Any],
) -> Likelihood:
    """Shared end of the t / F / p routes: match z to p, then pick the effect's scale."""
    z = math.copysign(stats.norm.isf(p / 2), t)
    if not (math.isfinite(z) and z != 0):
        raise ValueError(f"a test with P = {p:.3g} carries no usable SE; report an estimate and CI")
    if p_reported is not None:
        text += f" (reported P = {p_reported:g})"
    text += (
        f"; matched to the standard-normal z = {z:.4g} with the same two-sided P, so the "
        "normal likelihood reproduces the test"
    )
    if estimate is not None:
        if scale is None:
            raise ValueError("give scale= (the unit of estimate)")
        if estimate * z <= 0:
            raise ValueError(f"estimate {estimate} and the test's direction ({z:+.3g}) disagree")
        se = abs(estimate) / abs(z)
        text += (
            f". SE = |estimate| / |z| = {abs(estimate):.4g} / {abs(z):.4g} = {se:.4g} "
            "(test-based SE, Altman & Bland 2011): assumes the estimate and the test belong "
            "to the same contrast"
        )
        return Likelihood(estimate, se, scale, text, **info)
    if n is not None:
        if design == "parallel":
            _need_n2(n2)
            est, scale = t * math.sqrt(1 / n + 1 / n2), "d"
            text += f". d = t sqrt(1/n1 + 1/n2) = {est:.4g} (pooled-SD standardised)"
        else:
            est, scale = t / math.sqrt(n), "d_z"
            text += (
                f". d_z = t / sqrt(n) = {t:.4g} / sqrt({n}) = {est:.4g}, the effect in SDs of "
                "within-participant differences that a paired t-test with this t on n "
                "participants implies (Lakens 2013); a mixed-model test on repeated blocks is "
                "only approximately such a test"
            )
        se = abs(est) / abs(z)
        text += f"; SE = |d| / |z| = {se:.4g} (the SD's own sampling error is ignored)"
        return Likelihood(est, se, scale, text, **info)
    text += ". No estimate or n: the effect is on the z scale (SE units, SE = 1)"
    return Likelihood(z, 1.0, "z", text, **info)


def from_t(
    t: float,
    df: float | None = None,
    *,
    estimate: float | None = None,
    scale: str | None = None,
    n: int | None = None,
    n2: int | None = None,
    design: Design = "paired",
    p_reported: float | None = None,
    **info: Any,
) -> Likelihood:
    """Likelihood from a t statistic.

    Parameters
    ----------
    t : float
        Signed t (positive = effect in the direction ``effect`` describes).
    df : float, optional
        Degrees of freedom; derived from ``n`` (and ``design``) when omitted.
    estimate, scale : float, str, optional
        The reported effect estimate for the same contrast and its unit. With it the effect
        stays on that scale with ``SE = |estimate| / |z|`` (test-based SE).
    n, n2 : int, optional
        Participants (paired / crossover), or the two group sizes (parallel). They set df
        when it is omitted and, without an estimate, standardise the effect: Cohen's
        d_z = t / sqrt(n) (paired / crossover) or d = t sqrt(1/n + 1/n2) (parallel). Without
        estimate or n, the effect is z (SE units, SE = 1).
    design : {"paired", "crossover", "parallel"}, default "paired"
        A crossover's treatment contrast is a within-participant (paired) contrast; with
        equal sequence groups its period-adjusted SE equals the paired one (Senn 2002).
    p_reported : float, optional
        The paper's p, quoted in the approximation text for comparison.
    **info
        effect, benefit, citation, doi, source: passed to :class:`Likelihood`.

    Returns
    -------
    Likelihood
        Normal likelihood whose two-sided Wald p equals the t-test's p.

    Examples
    --------
    >>> from kbayes.published.convert import from_t
    >>> round(from_t(2.0, 20).p_value, 4)
    0.0593
    """
    df_used, df_text = _df(df, n, n2, design)
    p = p_from_t(t, df_used)
    dof = "normal reference" if df_used is None else f"{df_used:g} df"
    text = f"{df_text}t = {t:.4g} on {dof} -> two-sided P = {p:.4g}"
    return _from_test(
        t, p, text, estimate=estimate, scale=scale, n=n, n2=n2, design=design,
        p_reported=p_reported, info=info,
    )  # fmt: skip


def from_f(
    f: float, df: int | tuple[int, int] | list[int], *, direction: int, **kwargs: Any
) -> Likelihood:
    """Likelihood from F(1, df) and the direction the paper reports.

    ``t = direction * sqrt(F)`` on ``df`` degrees of freedom, then as :func:`from_t` (same
    keywords). ``df`` is the denominator df or the pair ``(1, df)``.

    Examples
    --------
    >>> from kbayes.published.convert import from_f
    >>> round(from_f(5.39, (1, 74), direction=1).p_value, 3)
    0.023
    """
    t, df2 = t_from_f(f, df, direction)
    lik = from_t(t, df2, **kwargs)
    head = f"F(1, {df2}) = {f:g} -> |t| = sqrt(F) = {abs(t):.4g}, sign {direction:+d} as reported; "
    return _prepend(lik, head)


def from_p(
    p: float,
    *,
    direction: int,
    df: float | None = None,
    two_sided: bool = True,
    upper_bound: bool = False,
    **kwargs: Any,
) -> Likelihood:
    """Likelihood from a p-value, its direction and (optionally) n, df or an estimate.

    The t with this p on ``df`` (derived from ``n`` if omitted; standard normal without
    either) is signed by ``direction`` and passed to :func:`from_t` (same keywords).
    ``two_sided=False`` doubles a one-sided p (in the reported direction).
    ``upper_bound=True`` marks "P < value": the bound is used, which understates the evidence.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    p2 = p if two_sided else 2 * p
    if not 0 < p2 < 1:
        raise ValueError(f"need 0 < two-sided p < 1, got {p2}")
    df_used, _ = _df(df, kwargs.get("n"), kwargs.get("n2"), kwargs.get("design", "paired"))
    ref = stats.norm if df_used is None else stats.t(df_used)
    t = direction * float(ref.isf(p2 / 2))
    head = f"two-sided P = {p2:g}" + (" (one-sided P doubled)" if not two_sided else "")
    if upper_bound:
        head += " (reported only as an upper bound; the bound is used, understating the evidence)"
    head += f", direction {direction:+d} -> t = {t:.4g}; "
    return _prepend(from_t(t, df_used, **kwargs), head)


def from_mean_difference(
    difference: float,
    sd: float,
    n: int,
    *,
    scale: str,
    n2: int | None = None,
    design: Design = "paired",
    r: float | None = None,
    **info: Any,
) -> Likelihood:
    """Likelihood from a mean difference and an SD.

    Parameters
    ----------
    difference : float
        Mean difference (treatment minus comparator), in ``scale`` units.
    sd : float
        Paired / crossover: the SD of within-participant differences, or, with ``r``, the
        SD of single measurements (then ``SD_diff = sd sqrt(2 (1 - r))``). Parallel: the
        pooled SD of single measurements.
    n, n2 : int
        Participants (paired / crossover), or the two group sizes (parallel).
    r : float, optional
        Within-participant correlation between conditions (an assumption unless reported).

    Notes
    -----
    Normal, not t_{n-1}: slightly too narrow for small n. In a 2x2 crossover with equal
    sequence groups the period-adjusted SE equals ``SD_diff / sqrt(n)`` (Senn 2002).
    """
    if design == "parallel":
        _need_n2(n2)
        se = sd * math.sqrt(1 / n + 1 / n2)
        text = f"SE = SD sqrt(1/n1 + 1/n2) = {sd:g} sqrt(1/{n} + 1/{n2}) = {se:.4g}"
    else:
        sd_diff = sd if r is None else sd * math.sqrt(2 * (1 - r))
        se = sd_diff / math.sqrt(n)
        text = (
            f"SE = SD_diff / sqrt(n) = {sd_diff:.4g} / sqrt({n}) = {se:.4g}"
            if r is None
            else f"SD_diff = SD sqrt(2 (1 - r)) = {sd:g} sqrt(2 (1 - {r:g})) = {sd_diff:.4g} "
            f"(r assumed); SE = SD_diff / sqrt({n}) = {se:.4g}"
        )
        text += f" ({design}; crossover period effects ignored, exact for balanced sequences)"
    text += "; normal likelihood, slightly too narrow for small n"
    return Likelihood(difference, se, scale, text, **info)


def _prepend(lik: Likelihood, head: str) -> Likelihood:
    return dataclasses.replace(lik, approximation=head + lik.approximation)


def from_result(
    result: Result,
    *,
    direction: int,
    estimate: Result | None = None,
    n: int | None = None,
    design: Design = "crossover",
    p_reported: float | None = None,
    **info: Any,
) -> Likelihood:
    """Likelihood from a registry :class:`~kbayes.published.Result` (F, t, p or p bound).

    ``estimate`` is an optional registry result giving the effect for the same contrast
    ("percent" or another single number); its unit becomes the scale. The citation, DOI and
    source come from the registry. Other statistics (r, counts, ranges) raise ``ValueError``.
    """
    info = {"citation": result.citation, "doi": result.doi, "source": result.source, **info}
    kw: dict[str, Any] = {"n": n, "design": design, **info}
    note = ""
    if estimate is not None:
        kw |= {"estimate": direction * abs(float(estimate.value))}
        kw |= {"scale": "%" if estimate.statistic.startswith("percent") else estimate.statistic}
        note = f"; estimate {estimate.value} from {estimate.source}"
        if estimate.extra.get("approximate"):
            note += " (marked approximate in the registry)"
        if estimate.statistic.startswith("percent"):
            note += (
                "; a percentage is a ratio whose denominator is treated as known, which "
                "understates the SE"
            )
    p_rep = p_reported if p_reported is not None else result.p
    stat = result.statistic
    if stat == "F" and result.df is not None:
        lik = from_f(result.value, result.df, direction=direction, p_reported=p_rep, **kw)
    elif stat == "F" and result.p is not None:
        floor = p_from_t(math.sqrt(result.value), None)
        if result.p < floor:
            raise ValueError(
                f"{result.source}: F = {result.value} with P = {result.p} cannot be an F(1, df) "
                f"(any F(1, df) = {result.value} has P >= {floor:.3f}); it tests several "
                "contrasts and has no single signed effect"
            )
        lik = _prepend(from_p(result.p, direction=direction, **kw), "F df not reported; ")
    elif stat == "t" and result.df is not None:
        lik = from_t(direction * abs(result.value), result.df, p_reported=p_rep, **kw)
    elif stat == "t" and result.p is not None:
        head = f"t = {result.value} reported without df; converted from its P; "
        lik = _prepend(from_p(result.p, direction=direction, **kw), head)
    elif stat in ("p", "p_upper_bound"):
        bound = stat == "p_upper_bound"
        lik = from_p(result.value, direction=direction, upper_bound=bound, **kw)
    else:
        raise ValueError(
            f"{result.source}: statistic {stat!r} is not a test of one contrast; "
            "convertible: F(1, df), t, p"
        )
    return dataclasses.replace(lik, approximation=lik.approximation + note)


def from_registry(study: str, outcome: str) -> Likelihood:
    """Likelihood for a registry outcome key (see ``kb.published.outcomes()``).

    Examples
    --------
    >>> from kbayes.published.convert import from_registry
    >>> lik = from_registry("jelen2025", "madrs_day1")
    >>> lik.scale, round(lik.estimate)
    ('%', 28)
    """
    o = published.outcome(study, outcome)
    test = published.find(study, o.test)
    est = published.find(study, o.estimate) if o.estimate else None
    p_rows = [
        r for r in published.study(study).results if (r.statistic, r.outcome) == ("p", test.outcome)
    ]
    return from_result(
        test,
        direction=o.direction,
        estimate=est,
        n=published.study(study).n,
        design=o.design,
        p_reported=p_rows[0].value if p_rows else None,
        effect=o.effect,
        benefit=o.benefit,
    )
