"""Errors a user can cause.

Every exception here carries a single-line message that names the problem and
the fix. Entry points catch :class:`DfkdError`, print ``error: <message>`` to
stderr and exit with status 2, so a user never sees a traceback for a mistake
of their own; anything else is a bug and keeps its traceback.
"""


class DfkdError(Exception):
    """Base class: a mistake the user can fix. The message is one line."""


class ConfigError(DfkdError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(DfkdError):
    """A data file is missing, corrupted or of the wrong shape."""


class DataMissingError(DataError):
    """A data file is not present (and could not be installed from a mirror)."""


class TeacherError(DfkdError):
    """A teacher checkpoint is missing or does not match the dataset/config."""
