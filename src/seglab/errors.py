"""User-facing error type: its message is shown as one line (CLI) or a notification (napari)."""


class SeglabError(Exception):
    """An error caused by input or settings, with a message meant for the user."""


class Cancelled(Exception):
    """Raised inside the core when the caller asked to stop a running job."""


class SeglabWarning(UserWarning):
    """Something the user should know that did not stop the work (e.g. a skipped model folder)."""
