"""An experiment's command: the template in its report, turned into an argv and an environment for one setting."""

from __future__ import annotations

import os
import shlex
import sys

from lab.errors import BadInput
from lab.core.settings import Setting

# lab's own training program, run when the report names no command.
DEFAULT_COMMAND = "{python} -m lab.train {settings}"
PLACEHOLDERS = ("settings", "output_dir", "name", "python")


def template_for(setting: Setting) -> str:
    return setting.experiment.command_template() or DEFAULT_COMMAND


def is_default_program(template: str) -> bool:
    """Whether the template runs lab's own training program (so `lab run` can check its keys before queueing)."""
    parts = shlex.split(template)
    return len(parts) >= 3 and parts[1:3] == ["-m", "lab.train"]


def build_argv(setting: Setting, settings_path: os.PathLike | str, template: str | None = None) -> list[str]:
    """Split the template as a shell would, then fill each word's placeholders (no shell ever runs).

    Filling after splitting keeps a path with spaces one argument. Only the documented placeholders are
    filled, and only as they are (`{settings}`, never `{settings.attr}`, `{0}` or `{name!r:>9}`): the template
    comes from a file, and `str.format` would evaluate attribute and index lookups in it.
    """
    template = template or template_for(setting)
    where = f"{setting.experiment.report_path}: command"
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise BadInput(f"{where}: {e}") from None
    if not words:
        raise BadInput(f"{where} is empty")
    if "\0" in template:
        raise BadInput(f"{where}: holds a NUL byte (\\0), which no program argument can carry")
    values = {
        "settings": str(settings_path),
        "output_dir": str(output_dir(setting)),
        "name": setting.name,
        "python": sys.executable,
    }
    return [_fill(word, values, where) for word in words]


def _fill(word: str, values: dict, where: str) -> str:
    """One word of the template with its placeholders filled; anything but a bare known placeholder is refused."""
    import string

    try:
        parts = list(string.Formatter().parse(word))
    except ValueError as e:
        raise BadInput(f"{where}: {e} in {word!r} (write {{{{ and }}}} for literal braces)") from None
    out = []
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if field not in values or spec or conversion:
            written = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            known = ", ".join("{%s}" % p for p in PLACEHOLDERS)
            inside = f" in {word!r}" if word != written else ""
            raise BadInput(f"{where}: unknown placeholder {written}{inside} (known: {known}; "
                           "write {{ and }} for literal braces)")
        out.append(values[field])
    return "".join(out)


def output_dir(setting: Setting):
    return setting.experiment.models_dir / setting.name


def lab_env(setting: Setting, settings_path, metrics_path, base: dict | None = None) -> dict:
    """The environment a job runs in: `base` (the queueing shell's) plus the `LAB_*` variables."""
    env = dict(os.environ if base is None else base)
    exp = setting.experiment
    env.update(
        LAB_ROOT=str(exp.workspace.root),
        LAB_EXPERIMENT=exp.name,
        LAB_EXPERIMENT_DIR=str(exp.dir),
        LAB_SETTING=setting.name,
        LAB_SETTINGS=str(settings_path),
        LAB_OUTPUT_DIR=str(output_dir(setting)),
        LAB_METRICS=str(metrics_path),
    )
    # Where TensorBoard writers (the transformers Trainer's among them) put their event files: the output
    # directory, where lab reads them (unless the user chose a place).
    env.setdefault("TENSORBOARD_LOGGING_DIR", str(output_dir(setting)))
    return env
