"""What stops kukeond at start for a reason its operator must fix (another kukeond on the
same directories, an address in use, a missing certificate): reported as one log line
naming the cause, and exit status 1, instead of a traceback."""

from __future__ import annotations


class StartupError(RuntimeError):
    """kukeond cannot start; the message says why and what to do."""
