"""User-facing error type: its message is shown as one line (CLI) or a notification (napari)."""


class SeglabError(Exception):
    """An error caused by input or settings, with a message meant for the user."""


class Cancelled(Exception):
    """Raised inside the core when the caller asked to stop a running job."""
