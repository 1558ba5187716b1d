"""Checks of constructor arguments, shared by the model, its parts and the data modules: a value
of the wrong type or range (a float where a count belongs, a string "false" for a switch, as a
hand-edited config.json or a script may give) is refused when the object is built, with an error
naming the argument, rather than failing later where the error names nothing."""

import math
import numbers

import numpy as np


def is_real(value: object) -> bool:
    """Whether ``value`` is a finite real number (not a bool), NumPy's included: what a weight
    or a rate must be."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (NumPy's included) and not a bool, which Python counts as
    one: what a count of steps, samples, units or pixels must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_number(name: str, value: object, *, minimum: float | None = None,
                 integer: bool = True) -> None:
    """Refuse an argument ``name`` that is not an integer (a real number with ``integer=False``;
    never a bool) of at least ``minimum``: a TypeError for the type, a ValueError for the
    range, each naming the argument, its value and what it must be."""
    wanted = ("an integer" if integer else "a number") + (
        f" >= {minimum}" if minimum is not None else "")
    if not (is_int(value) if integer else isinstance(value, numbers.Real)
            and not isinstance(value, bool)):
        raise TypeError(f"{name}={value!r}: expected {wanted}, got a {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r}: expected {wanted}")


def check_bool(name: str, value: object) -> None:
    """Refuse a switch that is not a bool (NumPy's included), naming it: a string "false"
    would turn it on."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r}: expected true or false, got a "
                        f"{type(value).__name__}")
