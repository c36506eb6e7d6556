"""Decision rules: grammar, composition, checks against a spec, decisions on draws."""

from __future__ import annotations

import numpy as np
import pytest

import kbayes as kb
from kbayes.rules import GoNoGo, Rule, as_rule


@pytest.fixture(scope="module")
def joint():
    return kb.load_spec("joint")


def test_canonical_text_and_conditions():
    rule = Rule("P(ntx_glu<0)>0.95 and P(attenuation_pct > 10%) >= .9")
    assert rule.text == "P(ntx_glu < 0) > 0.95 & P(attenuation_pct > 10 %) >= 0.9"
    assert rule.estimands == ("ntx_glu", "attenuation_pct")
    assert [c.percent for c in rule.conditions] == [False, True]
    assert Rule(rule.text) == rule


def test_and_binds_tighter_than_or():
    rule = Rule("P(a < 0) > 0.9 | P(b < 0) > 0.9 & P(c < 0) > 0.9")
    probs = {"P(a < 0) > 0.9": 0.95, "P(b < 0) > 0.9": 0.0, "P(c < 0) > 0.9": 0.0}
    assert rule.decide(probs)  # a | (b & c)
    grouped = Rule("(P(a < 0) > 0.9 | P(b < 0) > 0.9) & P(c < 0) > 0.9")
    assert not grouped.decide(probs)
    assert grouped.text == "(P(a < 0) > 0.9 | P(b < 0) > 0.9) & P(c < 0) > 0.9"


def test_composition_with_operators():
    rule = Rule("P(ntx_glu < 0) > 0.95") & "P(ntx_glu < -0.01) > 0.5"
    assert rule.text == "P(ntx_glu < 0) > 0.95 & P(ntx_glu < -0.01) > 0.5"
    either = Rule("P(ntx_glu < 0) > 0.95") | Rule("P(ntx_imp_total < 0) > 0.95")
    assert either.decide({"P(ntx_glu < 0) > 0.95": 0.5, "P(ntx_imp_total < 0) > 0.95": 0.99})


def test_probabilities_on_draws_rope_and_interval(joint):
    draws = {"ntx_glu": np.arange(-20, 21) / 1000, "ntx_imp_total": np.arange(-40, 41) / 10}
    rule = Rule(
        "P(ntx_glu < 0) > 0.4 & P(in_rope(ntx_imp_total)) < 0.6 & P(ntx_glu in [-0.01, 0.01]) > 0.4"
    )
    probs = rule.probabilities(draws, joint)
    assert probs["P(ntx_glu < 0) > 0.4"] == pytest.approx(20 / 41)
    assert probs["P(in_rope(ntx_imp_total)) < 0.6"] == pytest.approx(41 / 81)  # rope [-2, 2]
    assert probs["P(ntx_glu in [-0.01, 0.01]) > 0.4"] == pytest.approx(21 / 41)
    assert rule(draws, joint)
    assert rule.outcome(probs) == "go"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("P(ntx_gluu < 0) > 0.9", "'ntx_gluu' is not an estimand of spec 'joint'"),
        ("P(ntx_glu < 1 %) > 0.9", "'%' but ntx_glu is in"),
        ("P(in_rope(ntx_glu_male)) < 0.1", "gives ntx_glu_male no rope"),
    ],
)
def test_check_against_spec_names_the_problem(joint, expr, message):
    with pytest.raises(kb.SpecError, match=message):
        Rule(expr).check(joint)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("P(ntx_glu < 0)", "expected <, <=, > or >="),
        ("P(ntx_glu < 0) > 1.5", "not in \\[0, 1\\]"),
        ("Q(ntx_glu < 0) > 0.5", "expected P"),
        ("P(ntx_glu < 0) > 0.5 &", "expected P, got 'the end'"),
        ("P(ntx_glu in [1, 0]) > 0.5", "needs low < high"),
        ("P(ntx_glu < 0) > 0.5 $", "cannot read"),
    ],
)
def test_syntax_errors(expr, message):
    with pytest.raises(ValueError, match=message):
        Rule(expr)


def test_go_nogo_three_outcomes():
    rule = GoNoGo("P(d < 0) > 0.95 & P(d < -3) > 0.5", "P(d < 0) < 0.5")
    keys = ("P(d < 0) > 0.95", "P(d < -3) > 0.5", "P(d < 0) < 0.5")

    def outcome(p0, p3):
        return rule.outcome(dict(zip(keys, (p0, p3, p0), strict=True)))

    assert outcome(0.99, 0.7) == "go"
    assert outcome(0.99, 0.2) == "inconclusive"  # significant but not relevant
    assert outcome(0.3, 0.0) == "no-go"
    assert rule.outcomes == ("go", "no-go", "inconclusive")
    assert [c.text for c in rule.conditions] == list(dict.fromkeys(keys))
    with pytest.raises(TypeError):
        rule & "P(d < 0) > 0.5"


def test_as_rule_from_plain_data():
    assert as_rule("P(x < 0) > 0.9") == Rule("P(x < 0) > 0.9")
    assert as_rule({"expr": "P(x < 0) > 0.9"}) == Rule("P(x < 0) > 0.9")
    both = as_rule({"go": "P(x < 0) > 0.9", "nogo": "P(x < 0) < 0.2"})
    assert isinstance(both, GoNoGo)
    with pytest.raises(ValueError, match="unknown keys"):
        as_rule({"go": "P(x < 0) > 0.9", "stop": "P(x < 0) < 0.2"})


def test_a_rule_names_a_pretreatment_of_several():
    """With several pretreatments a rule names the condition or contrast in brackets, as
    the estimand table does; the bare name is refused with an example."""
    spec = kb.load_spec("joint").for_trial(
        kb.TrialConfig(conditions=("placebo", "naltrexone", "nalmefene"))
    )
    one, pair = "ntx_glu[nalmefene]", "ntx_glu[nalmefene vs naltrexone]"
    rule = Rule(f"P({one} < 0) > 0.9 & P(in_rope({pair})) > 0.5")
    assert rule.estimands == (one, pair)
    rule.check(spec)
    assert rule({one: np.full(100, -0.01), pair: np.zeros(100)}, spec)
    with pytest.raises(
        kb.SpecError, match=r"per pretreatment; name one, e.g. ntx_glu\[naltrexone\]"
    ):
        Rule("P(ntx_glu < 0) > 0.9").check(spec)
    with pytest.raises(kb.SpecError, match="not an estimand"):
        Rule("P(ntx_glu[nope] < 0) > 0.9").check(spec)


def test_a_rule_names_a_rating_time():
    """A trajectory's estimands are named by time, ``ntx_imp_total[24 h]`` (the number and
    the unit are read as the level's name), also with a condition."""
    rule = Rule("P(ntx_imp_total[24 h] < 0) > 0.95 | P(ntx_imp_total[nalmefene, 168 h] < -3) > 0.5")
    assert rule.estimands == ("ntx_imp_total[24 h]", "ntx_imp_total[nalmefene, 168 h]")
    spec = kb.load_spec("trajectory").for_trial(kb.TrialConfig(rating_times_h=(4, 24)))
    Rule("P(ntx_imp_total[24 h] < 0) > 0.95").check(spec)
    with pytest.raises(kb.SpecError, match=r"e.g. ntx_imp_total\[4 h\]"):
        Rule("P(ntx_imp_total < 0) > 0.95").check(spec)
