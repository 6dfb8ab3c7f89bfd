"""Labels the reward model is fitted with when the oracle says infeasible (or failed)."""
import numpy as np
import pytest

from seiko.methods import impute, infeasible_fill

VALUES = np.array([0.1, 0.3, -np.inf, np.nan, 0.5])


def test_fixed_value_fills_infeasible_and_failed():
    y, keep = impute(VALUES, -0.25)
    np.testing.assert_allclose(y, [0.1, 0.3, -0.25, -0.25, 0.5])
    assert keep.all()


def test_null_leaves_them_out():
    y, keep = impute(VALUES, None)
    np.testing.assert_allclose(y, [0.1, 0.3, 0.5])
    assert keep.tolist() == [True, True, False, False, True]


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_relative_fill_is_k_std_below_the_lowest_on_any_scale(scale):
    feasible = scale * np.array([0.1, 0.3, 0.5])
    y, _ = impute(scale * VALUES, "min-2std")
    expected = scale * (0.1 - 2 * np.std([0.1, 0.3, 0.5]))
    np.testing.assert_allclose(y[[2, 3]], expected, rtol=1e-9)
    assert infeasible_fill(feasible, "min-0.5std") > infeasible_fill(feasible, "min-2std")


def test_relative_fill_without_a_scale_yet():
    assert infeasible_fill(np.array([]), "min-1std") == 0.0
    assert infeasible_fill(np.array([0.4]), "min-1std") == pytest.approx(0.4)


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="infeasible_value"):
        infeasible_fill(np.array([0.1]), "lowest")
