"""Errors that end a command with one clear line instead of a traceback."""


class StartupError(Exception):
    """A problem an operator can fix (bad setting, port in use, schema behind); printed as one
    line."""
