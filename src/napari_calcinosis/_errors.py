"""The one exception type a user can cause."""


class CalcinosisError(Exception):
    """A problem the user can fix: a bad file, a missing pixel spacing, a seed off the image.

    The message always says what went wrong and what to do; the CLI prints it on one line.
    """
