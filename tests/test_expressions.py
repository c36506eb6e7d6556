"""Estimand expressions are plain arithmetic; label placeholders are trial names or
constants."""

from __future__ import annotations

import pytest

from kbayes.expressions import check_expr, check_placeholders, evaluate, expression_names


def test_evaluate_is_plain_arithmetic():
    assert evaluate("-2 * a ** 2 + sqrt(b) / abs(c)", {"a": 3, "b": 16, "c": -2}) == -16
    with pytest.raises(ValueError, match=r"not allowed|cannot"):
        evaluate("a.b", {"a": 1})
    assert expression_names("gamma_N + p_above(t, m, s, 1, nu)") == {"gamma_N", "t", "m", "s", "nu"}


def test_checks_name_what_is_wrong():
    assert check_expr("derived.d", "beta0 + x", {"beta0"}) == [
        "derived.d: 'beta0 + x' refers to x, not in this model"
    ]
    assert check_expr("derived.d", "__import__('os')", set())[0].startswith("derived.d: cannot")
    assert check_placeholders("label", "{active} per {step:g}", {"step": 0.01}) == []
    assert check_placeholders("label", "{actve}", {}) == [
        "label: {actve} is neither a trial name (active, reference, metabolite, scale, drug, "
        "time) "
        "nor a constant of this spec"
    ]
