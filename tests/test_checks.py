"""The shared argument checks: what they accept (NumPy's numbers and bools included) and the
errors that name what they refuse."""

import numpy as np
import pytest

from lightning_vae.checks import check_bool, check_number


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_an_integer_of_any_integral_type_is_accepted(value):
    check_number("n", value, minimum=1)


@pytest.mark.parametrize("value, error, message", [
    (3.0, TypeError, "n=3.0: expected an integer >= 1, got a float"),
    (True, TypeError, "n=True: expected an integer >= 1, got a bool"),
    ("3", TypeError, "n='3': expected an integer >= 1, got a str"),
    (0, ValueError, "n=0: expected an integer >= 1"),
])
def test_an_integer_of_the_wrong_type_or_range_is_refused_naming_it(value, error, message):
    with pytest.raises(error, match=f"^{message}"):
        check_number("n", value, minimum=1)


def test_a_real_number_is_accepted_where_integer_is_false():
    check_number("fraction", np.float32(0.5), integer=False)
    with pytest.raises(TypeError, match="fraction=True: expected a number, got a bool"):
        check_number("fraction", True, integer=False)


@pytest.mark.parametrize("value", [True, False, np.True_, np.False_])
def test_a_switch_takes_python_and_numpy_bools(value):
    check_bool("download", value)


@pytest.mark.parametrize("value", ["false", 0, None])
def test_a_switch_refuses_what_only_looks_like_a_bool(value):
    with pytest.raises(TypeError, match=f"download={value!r}: expected true or false"):
        check_bool("download", value)
