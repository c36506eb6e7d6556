"""Decision rules: declarative, composable statements about posterior probabilities.

A rule is a value, written in a small grammar over the spec's estimand names::

    rule := term (("|" | "or") term)*
    term := atom (("&" | "and") atom)*
    atom := "(" rule ")" | "P(" event ")" cmp number
    event := name cmp number ["%"] | "in_rope(" name ")" | name "in" "[" number "," number "]"
    cmp  := "<" | "<=" | ">" | ">="
    name := word ["[" level ("," level)* "]"]   (ntx_glu[nalmefene], ntx_imp_total[24 h])

``P(ntx_glu < 0) > 0.95`` holds when more than 95 % of the posterior of ``ntx_glu`` lies
below 0. ``in_rope(name)`` uses the spec's region of practical equivalence (ROPE) of that
estimand; ``name in [a, b]`` gives one explicitly. A trailing ``%`` says the threshold is in
percent, and is only accepted for an estimand whose unit is ``%`` (``attenuation_pct``):
the number is never rescaled. :class:`GoNoGo` combines two rules into go / no-go /
inconclusive, as in the dual-criterion designs of RBesT's ``decision2S`` (Neuenschwander
et al. 2020).

Every rule is decided from the probabilities of its atomic conditions
(:meth:`Rule.probabilities`), which is what a power run stores per replicate.

References
----------
Neuenschwander B, Roychoudhury S, Schmidli H. On the use of co-data in clinical trials.
Stat Biopharm Res 2016;8:345-354. doi:10.1080/19466315.2016.1174149
Kruschke JK. Rejecting or accepting parameter values in Bayesian estimation. Adv Methods
Pract Psychol Sci 2018;1:270-280. doi:10.1177/2515245918771304
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kbayes.errors import SpecError

_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op><=|>=|<|>)"
    r"|(?P<word>[A-Za-z_]\w*)|(?P<punct>[()\[\],%&|]))"
)


@dataclass(frozen=True)
class Condition:
    """One atomic condition ``P(event) <prob_op> prob``.

    Attributes
    ----------
    estimand : str
        Estimand name (the spec's).
    op : {"<", "<=", ">", ">=", "rope", "in"}
        Event comparison, or an interval event (the spec's ROPE, or ``interval``).
    threshold : float or None
        Event threshold on the estimand's scale (``None`` for interval events).
    prob_op : {"<", "<=", ">", ">="}
        Comparison of the event's posterior probability with ``prob``.
    prob : float
        Probability bound, in [0, 1].
    percent : bool
        The threshold was written with ``%``.
    interval : tuple of float or None
        The explicit interval of an ``in`` event.
    """

    estimand: str
    op: str
    threshold: float | None
    prob_op: str
    prob: float
    percent: bool = False
    interval: tuple[float, float] | None = None

    @property
    def event(self) -> str:
        """The event in canonical text, e.g. ``ntx_glu < 0``."""
        if self.op == "rope":
            return f"in_rope({self.estimand})"
        if self.op == "in":
            lo, hi = self.interval
            return f"{self.estimand} in [{lo:g}, {hi:g}]"
        return f"{self.estimand} {self.op} {self.threshold:g}{' %' if self.percent else ''}"

    @property
    def text(self) -> str:
        """Canonical text, e.g. ``P(ntx_glu < 0) > 0.95``."""
        return f"P({self.event}) {self.prob_op} {self.prob:g}"

    def probability(self, draws: np.ndarray, rope: tuple[float, float] | None = None) -> float:
        """Posterior probability of the event, the share of ``draws`` where it holds.

        ``rope`` is the estimand's ROPE (needed for ``in_rope`` events).
        """
        x = np.asarray(draws, dtype=float).reshape(-1)
        if self.op in ("rope", "in"):
            lo, hi = self.interval if self.op == "in" else rope
            return float(np.mean((x >= lo) & (x <= hi)))
        return float(np.mean(_CMP[self.op](x, self.threshold)))

    def holds(self, probability: float) -> bool:
        """Whether ``probability`` satisfies ``prob_op prob``."""
        return bool(_CMP[self.prob_op](probability, self.prob))


@dataclass(frozen=True)
class _Node:
    kind: str  # "and" | "or"
    parts: tuple


class Rule:
    """A decision rule on posterior probabilities of estimands (see the module docstring).

    Parameters
    ----------
    expr : str
        The rule, e.g. ``"P(ntx_glu < 0) > 0.95"`` or
        ``"P(ntx_imp_total < 0) > 0.9 & P(in_rope(ntx_imp_total)) < 0.2"``.

    Examples
    --------
    >>> rule = Rule("P(ntx_glu < 0) > 0.95")
    >>> rule.decide({"P(ntx_glu < 0) > 0.95": 0.97})
    True
    >>> (rule & Rule("P(ntx_glu < -0.01) > 0.5")).text
    'P(ntx_glu < 0) > 0.95 & P(ntx_glu < -0.01) > 0.5'
    """

    def __init__(self, expr: str | Rule):
        if isinstance(expr, GoNoGo):
            raise TypeError("a GoNoGo has three outcomes and is not a Rule's expression")
        if isinstance(expr, Rule):
            self._tree = expr._tree
        else:
            self._tree = _Parser(expr).parse()

    @classmethod
    def _from_tree(cls, tree: Any) -> Rule:
        rule = cls.__new__(cls)
        rule._tree = tree
        return rule

    @property
    def text(self) -> str:
        """Canonical text of the rule."""
        return _text(self._tree, top=True)

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """The atomic conditions, each once, in order of appearance."""
        return tuple(dict.fromkeys(_atoms(self._tree)))

    @property
    def estimands(self) -> tuple[str, ...]:
        """Estimand names the rule uses, in order of appearance."""
        return tuple(dict.fromkeys(c.estimand for c in self.conditions))

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Possible outcomes of :meth:`outcome`."""
        return ("go", "no-go")

    def check(self, spec: Any) -> None:
        """Raise :class:`~kbayes.SpecError` unless the rule fits ``spec``'s estimands.

        Checks that every name is an estimand, that ``in_rope`` events have a ROPE and that
        ``%`` thresholds belong to estimands in percent.
        """
        errors = []
        for c in self.conditions:
            est = spec.estimands.get(c.estimand.partition("[")[0])
            if est is None or c.estimand not in spec.estimand_rows:
                per = [r for r in spec.estimand_rows if r.startswith(f"{c.estimand}[")]
                errors.append(
                    f"{c.text}: {c.estimand} has one value per pretreatment; name one, e.g. "
                    f"{per[0]}" if per else
                    f"{c.text}: {c.estimand!r} is not an estimand of spec {spec.name!r} "
                    f"(estimands: {', '.join(spec.estimand_rows)})"
                )  # fmt: skip
            elif c.op == "rope" and est.rope is None:
                errors.append(f"{c.text}: spec {spec.name!r} gives {c.estimand} no rope")
            elif c.percent and est.unit.strip() != "%":
                errors.append(f"{c.text}: '%' but {c.estimand} is in {est.unit!r}")
        if errors:
            raise SpecError("rule:\n  " + "\n  ".join(errors))

    def probabilities(self, draws: Mapping[str, np.ndarray], spec: Any) -> dict[str, float]:
        """Posterior probability of each condition's event, keyed by the condition's text.

        Parameters
        ----------
        draws : mapping of str to numpy.ndarray
            Posterior draws of (at least) the rule's estimands.
        spec : ModelSpec
            Gives the ROPEs of ``in_rope`` events.
        """
        out = {}
        for c in self.conditions:
            rope = spec.estimand_of(c.estimand).rope if c.op == "rope" else None
            out[c.text] = c.probability(draws[c.estimand], rope)
        return out

    def decide(self, probabilities: Mapping[str, float]) -> bool:
        """Whether the rule holds, given :meth:`probabilities`' output."""
        return _decide(self._tree, probabilities)

    def outcome(self, probabilities: Mapping[str, float]) -> str:
        """``"go"`` if the rule holds, else ``"no-go"``."""
        return "go" if self.decide(probabilities) else "no-go"

    def __call__(self, draws: Mapping[str, np.ndarray], spec: Any) -> bool:
        """Whether the rule holds on posterior ``draws``."""
        return self.decide(self.probabilities(draws, spec))

    def __and__(self, other: Rule | str) -> Rule:
        return Rule._from_tree(_Node("and", (self._tree, Rule(other)._tree)))

    def __or__(self, other: Rule | str) -> Rule:
        return Rule._from_tree(_Node("or", (self._tree, Rule(other)._tree)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Rule({self.text!r})"


class GoNoGo(Rule):
    """Two rules give three outcomes: go, no-go or inconclusive.

    ``go`` when the go rule holds; otherwise ``no-go`` when the no-go rule holds; otherwise
    ``inconclusive``. With ``go = "P(d < 0) > 0.95 & P(d < -3) > 0.5"`` (significance and
    relevance, RBesT's dual criterion) and ``nogo = "P(d < 0) < 0.5"`` a trial can succeed,
    fail or leave the question open.

    Parameters
    ----------
    go, nogo : Rule or str

    Examples
    --------
    >>> d = GoNoGo("P(ntx_glu < 0) > 0.95", "P(ntx_glu < 0) < 0.5")
    >>> d.outcome({"P(ntx_glu < 0) > 0.95": 0.8, "P(ntx_glu < 0) < 0.5": 0.8})
    'inconclusive'
    """

    def __init__(self, go: Rule | str, nogo: Rule | str):
        self.go, self.nogo = Rule(go), Rule(nogo)
        self._tree = _Node("or", (self.go._tree, self.nogo._tree))

    @property
    def text(self) -> str:
        return f"go: {self.go.text}; no-go: {self.nogo.text}"

    @property
    def outcomes(self) -> tuple[str, ...]:
        return ("go", "no-go", "inconclusive")

    def decide(self, probabilities: Mapping[str, float]) -> bool:
        """Whether the outcome is go."""
        return self.go.decide(probabilities)

    def outcome(self, probabilities: Mapping[str, float]) -> str:
        """``"go"``, ``"no-go"`` or ``"inconclusive"``."""
        if self.go.decide(probabilities):
            return "go"
        return "no-go" if self.nogo.decide(probabilities) else "inconclusive"

    def __and__(self, other: Rule | str) -> Rule:
        raise TypeError("combine the go and no-go rules before making a GoNoGo")

    __or__ = __and__

    def __repr__(self) -> str:
        return f"GoNoGo({self.go.text!r}, {self.nogo.text!r})"


def as_rule(rule: Rule | str | Mapping[str, str]) -> Rule:
    """A :class:`Rule` from a rule, its text, or ``{"go": ..., "nogo": ...}`` (a GoNoGo)."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, Mapping):
        unknown = set(rule) - {"go", "nogo", "expr"}
        if unknown:
            raise ValueError(f"rule: unknown keys {sorted(unknown)} (use expr, or go and nogo)")
        if "expr" in rule:
            return Rule(rule["expr"])
        return GoNoGo(rule["go"], rule["nogo"])
    return Rule(rule)


def _atoms(tree: Any):
    if isinstance(tree, Condition):
        yield tree
    else:
        for part in tree.parts:
            yield from _atoms(part)


def _decide(tree: Any, probabilities: Mapping[str, float]) -> bool:
    if isinstance(tree, Condition):
        return tree.holds(probabilities[tree.text])
    results = (_decide(p, probabilities) for p in tree.parts)
    return all(results) if tree.kind == "and" else any(results)


def _text(tree: Any, top: bool = False) -> str:
    if isinstance(tree, Condition):
        return tree.text
    sep = " & " if tree.kind == "and" else " | "
    body = sep.join(_text(p) for p in tree.parts)
    return body if top else f"({body})"


class _Parser:
    """Recursive-descent parser of the rule grammar (module docstring)."""

    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"rule {self.text!r}: cannot read {text[pos:]!r}")
            kind = m.lastgroup
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def _error(self, expected: str) -> ValueError:
        got = self.tokens[self.i][1] if self.i < len(self.tokens) else "the end"
        return ValueError(f"rule {self.text!r}: expected {expected}, got {got!r}")

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _take(self, kind: str, value: str | None = None) -> str:
        if self.i < len(self.tokens):
            k, v = self.tokens[self.i]
            if k == kind and (value is None or v == value):
                self.i += 1
                return v
        raise self._error(
            value or {"num": "a number", "word": "a name", "op": "<, <=, > or >="}[kind]
        )

    def parse(self) -> Any:
        tree = self._or()
        if self.i != len(self.tokens):
            raise self._error("'&', '|' or the end")
        return tree

    def _or(self) -> Any:
        parts = [self._and()]
        while self._peek() in ("|", "or"):
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else _Node("or", tuple(parts))

    def _and(self) -> Any:
        parts = [self._atom()]
        while self._peek() in ("&", "and"):
            self.i += 1
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else _Node("and", tuple(parts))

    def _name(self) -> str:
        """An estimand name, with its levels in brackets where it has several:
        ``ntx_glu[nalmefene]``, ``ntx_glu[nalmefene vs naltrexone]``, ``ntx_imp_total[24 h]``."""
        name = self._take("word")
        after = self.tokens[self.i + 1 : self.i + 2]
        if self._peek() != "[" or not after or after[0][0] not in ("word", "num"):
            return name
        self.i += 1
        parts: list[str] = []
        while self._peek() not in ("]", None):
            kind, value = self.tokens[self.i]
            if value == "," and parts:
                parts[-1] += ","
            elif kind in ("word", "num"):
                parts.append(value)
            else:
                raise self._error("a level name, a number or ']'")
            self.i += 1
        self._take("punct", "]")
        return f"{name}[{' '.join(parts)}]"

    def _atom(self) -> Any:
        if self._peek() == "(":
            self.i += 1
            tree = self._or()
            self._take("punct", ")")
            return tree
        self._take("word", "P")
        self._take("punct", "(")
        name = self._name()
        op, threshold, percent, interval = "rope", None, False, None
        if name == "in_rope":
            self._take("punct", "(")
            name = self._name()
            self._take("punct", ")")
        elif self._peek() == "in":
            self.i += 1
            self._take("punct", "[")
            lo = float(self._take("num"))
            self._take("punct", ",")
            hi = float(self._take("num"))
            self._take("punct", "]")
            if not lo < hi:
                raise ValueError(f"rule {self.text!r}: interval [{lo}, {hi}] needs low < high")
            op, interval = "in", (lo, hi)
        else:
            op = self._take("op")
            threshold = float(self._take("num"))
            if self._peek() == "%":
                self.i += 1
                percent = True
        self._take("punct", ")")
        prob_op = self._take("op")
        prob = float(self._take("num"))
        if not 0 <= prob <= 1:
            raise ValueError(f"rule {self.text!r}: probability {prob} is not in [0, 1]")
        return Condition(name, op, threshold, prob_op, prob, percent, interval)
