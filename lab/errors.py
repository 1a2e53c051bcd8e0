"""The one error type lab shows to users.

Library code raises these with a message written for the user (what was wrong, and where); the CLI turns
them into one line on stderr and an exit status. Nothing else in the library prints or exits.
"""


class LabError(Exception):
    """The work itself failed (exit status 1)."""

    exit_code = 1


class BadInput(LabError):
    """The user's input or files are wrong: a bad name, a malformed settings file (exit status 2)."""

    exit_code = 2


class NotALab(BadInput):
    """No lab root was found."""
