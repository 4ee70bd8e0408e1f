"""A signal handler for the span of a run (Ctrl+C in training, SIGTERM in a quantify batch)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def handling(signum, handler):
    """Within: ``handler`` takes the signal ``signum``; after, the handler before it again (for
    one not set from Python, Python's own: KeyboardInterrupt for SIGINT, the default else).
    Outside the main thread (the napari widget's worker) Python takes no handler: nothing
    changes. Yields whether ``handler`` was installed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signum, handler)
    try:
        yield True
    finally:
        if previous is None:
            previous = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, previous)
