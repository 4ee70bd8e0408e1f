"""The one exception type a user can cause."""


class CalcinosisError(Exception):
    """A problem the user can fix: a bad file, a missing pixel spacing, a seed off the image.

    The message always says what went wrong and what to do; the CLI prints it on one line.
    """


def checked_number(value, what: str, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float within [``low``, ``high``], else a CalcinosisError naming ``what``
    (e.g. "the calcium threshold (HU)"): NaN, infinity, text or None would otherwise run on and
    measure nonsense without a word."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise CalcinosisError(f"{what} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low:g} to {high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise CalcinosisError(f"{what} must be {span}, got {value:g}")
    return float(value)
