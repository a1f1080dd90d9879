"""The one exception type users see: the CLI prints its message on one line and exits with 2."""


class TexportError(Exception):
    """Bad input or a missing resource, explained in one line (no traceback for users)."""


class WeightsUnavailable(TexportError):
    """Descriptor weights that cannot be found or loaded; `auto` falls back on this."""
