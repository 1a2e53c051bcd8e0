"""An experiment's command: the template in its report, turned into an argv and an environment for one setting."""

from __future__ import annotations

import os
import shlex
import sys

from lab.errors import BadInput
from lab.core.settings import Setting

# lab's own training program, run when the report names no command.
DEFAULT_COMMAND = "{python} -m lab.train {settings}"
PLACEHOLDERS = ("settings", "output_dir", "name", "python", "flags", "settings.KEY")


def template_for(setting: Setting) -> str:
    return setting.experiment.command_template() or DEFAULT_COMMAND


def is_default_program(template: str) -> bool:
    """Whether the template runs lab's own training program (so `lab run` can check its keys before queueing)."""
    parts = shlex.split(template)
    return len(parts) >= 3 and parts[1:3] == ["-m", "lab.train"]


def build_argv(setting: Setting, settings_path: os.PathLike | str, template: str | None = None,
               out_dir: os.PathLike | str | None = None, resolved: dict | None = None) -> list[str]:
    """Split the template as a shell would, then fill each word's placeholders (no shell ever runs).

    Filling after splitting keeps a path with spaces one argument. Only the documented placeholders are
    filled, and only as they are (`{settings}`, never `{settings.attr!r}`, `{0}` or `{name:>9}`): the template
    comes from a file, and `str.format` would evaluate attribute and index lookups in it. `{flags}` (a word of its
    own) becomes the resolved setting as `--key value` words, `{settings.a.b}` one value of it (see `flags`).
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
        "output_dir": str(out_dir if out_dir is not None else output_dir(setting)),
        "name": setting.name,
        "python": sys.executable,
    }
    box: dict = {}

    def settings_of() -> dict:
        if "v" not in box:
            box["v"] = resolved if resolved is not None else setting.resolve()
        return box["v"]

    argv: list[str] = []
    for word in words:
        if word == "{flags}":
            argv.extend(flags(settings_of(), setting.where()))
        else:
            argv.append(_fill(word, values, where, settings_of, setting.where()))
    return argv


def flags(resolved: dict, where: str = "settings") -> list[str]:
    """The resolved setting as command-line flags, as argparse and transformers' HfArgumentParser read them:
    `--key=value` for a string or number; `--key=true` / `--key=false` for a boolean (HfArgumentParser reads these
    for every bool field, `Optional[bool]` ones included; an argparse switch needs `type=` a parser of "true" and
    "false" rather than `action="store_true"`); `--key a b c` for a list
    (`nargs="+"`); nested keys dotted (`--optim.lr=0.1`); null left out (the program's default). A value that
    cannot be passed so (an empty list, a list of lists or objects, a list item starting with `-`, a newline or
    a NUL) is refused, naming the key."""
    out: list[str] = []

    def walk(prefix: str, obj: dict) -> None:
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if not isinstance(key, str) or not key or key.startswith("-") or any(c.isspace() or c in "=\0" for c in key):
                raise BadInput(f"{where}: key {name!r} cannot be a command-line flag (--{name})")
            if isinstance(value, dict):
                if not value:
                    raise BadInput(f"{where}: {name}: an empty object cannot be passed as flags")
                walk(name + ".", value)
            elif value is None:
                continue
            elif isinstance(value, bool):
                out.append(f"--{name}={'true' if value else 'false'}")
            elif isinstance(value, list):
                if not value:
                    raise BadInput(f"{where}: {name}: an empty list cannot be passed as flags (leave the key out)")
                items = [_flag_value(v, name, where, item=True) for v in value]
                out.append(f"--{name}")
                out.extend(items)
            else:
                out.append(f"--{name}={_flag_value(value, name, where)}")

    walk("", resolved)
    return out


def _flag_value(value, name: str, where: str, item: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        if "\0" in value:
            raise BadInput(f"{where}: {name}: a NUL byte cannot be passed on a command line")
        if item and value.startswith("-") and not _is_number(value):
            raise BadInput(f"{where}: {name}: list item {value!r} starts with '-', which a program would read as a flag")
        return value
    kind = "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__
    raise BadInput(f"{where}: {name}: {kind} {'inside a list ' if item else ''}cannot be passed as a flag value")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def setting_value(resolved: dict, dotted: str, where: str) -> str:
    """`{settings.a.b}`: one value of the resolved setting, as a command-line word."""
    value = resolved
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadInput(f"{where}: no key {dotted!r} for {{settings.{dotted}}}")
        value = value[part]
    if value is None or isinstance(value, (dict, list)):
        kind = "null" if value is None else "an object" if isinstance(value, dict) else "a list"
        raise BadInput(f"{where}: {dotted} is {kind}, which {{settings.{dotted}}} cannot pass as one word (use {{flags}})")
    return _flag_value(value, dotted, where)


def _fill(word: str, values: dict, where: str, settings_of=None, setting_where: str = "") -> str:
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
        if field.startswith("settings.") and len(field) > 9 and not spec and not conversion and settings_of is not None:
            out.append(setting_value(settings_of(), field[9:], setting_where))
            continue
        if field not in values or spec or conversion:
            written = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            known = ", ".join("{%s}" % p for p in PLACEHOLDERS)
            if field == "flags":
                raise BadInput(f"{where}: {{flags}} must be a word of its own, not inside {word!r}")
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
