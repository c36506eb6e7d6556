"""The term registry and the parsing of terms and covariate tables (kbayes.terms)."""

from __future__ import annotations

import pytest

from kbayes.terms import (
    TERMS,
    coefficient_term,
    extend_terms,
    parse_covariates,
    parse_terms,
    term_coefficient,
)


@pytest.mark.parametrize(
    ("level", "term", "name"),
    [
        ("improvement", "age", "gamma_age"),
        ("glutamate", "age:condition", "beta_age_x_condition"),
        ("items", "site", "theta_site"),
    ],
)
def test_covariate_coefficients_are_named_and_read_back(level, term, name):
    assert term_coefficient(level, term) == name
    assert coefficient_term(name) == (level, term)


def test_registered_terms_keep_their_coefficients_and_are_not_read_as_covariates():
    for level, terms in TERMS.items():
        for term, entry in terms.items():
            assert term_coefficient(level, term) == entry.coefficient
            assert coefficient_term(entry.coefficient) is None


def test_a_formula_gives_canonical_terms_and_the_covariates_it_uses():
    errors: list[str] = []
    terms, used = parse_terms("improvement", "sex * condition + age + age:condition", errors)
    assert not errors
    assert set(terms) == {"sex", "condition", "condition:sex", "age", "age:condition"}
    assert used == {"age"}
    parse_terms("improvement", ["condition", "session"], errors, reserved=("session",))
    assert errors == [
        "terms.improvement: ['session'] in 'session' are names of model dims, not covariates"
    ]


def test_dots_stand_for_the_parents_terms():
    parent = {"improvement": ["condition", "sex"], "glutamate": ["condition"]}
    child = extend_terms(parent, {"improvement": "... + age", "glutamate": ["...", "period"]})
    assert child == {"improvement": ["condition", "sex", "age"],
                     "glutamate": ["condition", "period"]}  # fmt: skip


def test_covariate_tables_get_their_defaults_and_unused_ones_are_errors():
    errors: list[str] = []
    tables = {"site": {"levels": ["x", "y"]}, "age": {"center": "mean"}, "bmi": {}}
    out = parse_covariates(tables, {"site", "age"}, errors)
    assert out == {
        "age": {"center": "mean"},
        "site": {"levels": ["x", "y"], "reference": "x", "coding": "treatment"},
    }
    assert errors == ["covariates.bmi: not used by any term"]
