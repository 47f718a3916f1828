"""The two kinds of failure, decided where raised (see DESIGN.md, "Error model")."""


class ReconcilerError(Exception):
    """Base of reconciler's own errors."""


class TemporaryError(ReconcilerError):
    """Worth retrying with backoff: the cause may go away by itself."""


class PermanentError(ReconcilerError):
    """Recorded with its reason and not retried until the job file changes."""
