"""The errors jaxstyle raises for things a user can fix.

Every error names what is wrong and what to do. The CLI turns them into a one-line
message and a non-zero exit code; library users can catch ``JaxstyleError``.
"""


class JaxstyleError(Exception):
    """Base class of every error jaxstyle raises on purpose."""

    exit_code = 2


class OptionError(JaxstyleError, ValueError):
    """An option has a value that cannot work (a size of 0, an unknown layer...)."""


class ImageError(JaxstyleError):
    """An input image is missing, unreadable, or unusable for the chosen layers."""

    exit_code = 3


class WeightsError(JaxstyleError):
    """VGG-19 weights could not be found, fetched, converted or loaded."""

    exit_code = 4


class OutputError(JaxstyleError):
    """An output cannot be written where asked (or would overwrite an input)."""

    exit_code = 5


class CheckpointError(JaxstyleError):
    """A checkpoint cannot be read, or belongs to another run."""

    exit_code = 6


class MissingExtraError(JaxstyleError, ImportError):
    """A feature needs a package that is not installed (an optional extra); says what to install."""

    exit_code = 7


class ProcessError(JaxstyleError):
    """A multi-process run cannot start, or lost one of its processes."""

    exit_code = 8
