"""Exceptions raised by hashbench.

Every error a user can cause is a subclass of :class:`HashbenchError`; the CLI prints its message
and exits non-zero instead of showing a traceback. Input errors are also ``ValueError`` so that
scikit-learn-style code catching ``ValueError`` keeps working.
"""


class HashbenchError(Exception):
    """Base class of every error hashbench raises on purpose."""


class InvalidInputError(HashbenchError, ValueError):
    """An argument has the wrong shape, dtype, range or value; the message names it."""


class UnknownNameError(InvalidInputError):
    """A method, dataset, protocol or config key that is not registered."""


class NotFittedError(HashbenchError, ValueError, AttributeError):
    """``encode`` (or another method needing a fitted model) called before ``fit``."""


class TrainingDivergedError(HashbenchError, RuntimeError):
    """A loss became NaN or infinite during training; the message names the epoch and the term."""
