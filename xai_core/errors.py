"""User-facing errors: one class per kind, each message says what is wrong and how to fix it.

The CLI prints ``str(error)`` on one line and exits 2; the dashboard shows it with ``st.error``.
"""


class XAuditError(Exception):
    """Base class of every error a user can cause."""


class InputFileError(XAuditError):
    """An input file is missing, unreadable, truncated or of the wrong kind."""


class ShapeError(XAuditError):
    """An array or volume has the wrong shape, dimensionality or channel count."""


class InvalidValueError(XAuditError):
    """Data contain NaN/Inf or values outside what is allowed."""


class ConfigError(XAuditError):
    """An unknown or invalid parameter, option or configuration key."""


class WorkspaceError(XAuditError):
    """The workspace cannot be created or written, or an object is missing from it."""


class UnknownNameError(XAuditError):
    """An unknown dataset, architecture, checkpoint, method or pre-training source."""


class UnsupportedError(XAuditError):
    """A valid request that this combination (e.g. method × architecture) does not support."""


class CheckpointError(XAuditError):
    """A checkpoint is unsafe, truncated, or does not match its architecture."""


class JobRunningError(XAuditError):
    """The same background job (kind and settings) is already queued or running."""


class AuthError(XAuditError):
    """A login is refused: wrong name or password, a disabled account, or too many failures."""


class AccessDenied(XAuditError):
    """The signed-in account's role may not do or see this (the refusal is logged)."""
