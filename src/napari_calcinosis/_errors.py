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


# what to pass for an image layer where a CalcinosisImage is meant: its pixels and its spacing
AS_IMAGE = ("CalcinosisImage(pixels_hu={layer}.data, spacing_mm=tuple({layer}.scale[-2:])), which keeps its "
            "pixel spacing")


def refuse_layer(value, what: str, instead: str | None = None) -> None:
    """Raise a CalcinosisError when ``value`` is a napari layer where its pixels are meant.

    ``viewer.layers["bone"]`` for ``viewer.layers["bone"].data`` is the console's likeliest slip;
    NumPy turns a layer into an array of shape () and the error surfaces far from it (or as a
    TypeError). ``what`` names the argument, e.g. "the bone mask"; ``instead`` is what to pass
    (``{layer}`` stands for ``viewer.layers[name]``), by default the layer's data.
    """
    if not (hasattr(value, "data") and hasattr(value, "world_to_data") and hasattr(value, "scale")):
        return
    name = getattr(value, "name", "")
    if what == "seeds" and type(value).__name__ != "Points":
        raise CalcinosisError(f"seeds: got the napari layer {name!r}: seeds are (row, col) pairs in the image's "
                              "pixels, such as the points of a Points layer (docs/console.md)")
    if what == "seeds":
        raise CalcinosisError(
            f"{what}: got the napari Points layer {name!r}, not seeds in the image's pixels. Convert its points "
            f"through the world, as docs/console.md shows: [image_layer.world_to_data(points.data_to_world(p))[-2:] "
            f"for p in points.data]")
    layer = f"viewer.layers[{name!r}]"
    raise CalcinosisError(f"{what}: got the napari layer {name!r} itself, not its pixels: pass "
                          f"{(instead or '{layer}.data').format(layer=layer)}")
