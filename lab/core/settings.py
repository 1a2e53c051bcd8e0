"""Settings: one JSON or jsonnet file per run in `experiments/EXP/settings/`.

Each `*.json` / `*.jsonnet` file directly in `settings/` is one setting, named by its stem; `*.libsonnet` files
are shared bases that settings import (imports resolve relative to the importing file). A setting resolves to one
JSON object: what the program receives and what the run record keeps.

Sweeps: a `*.jsonnet` file whose value is an array of objects is a sweep, one setting per element, named from
the file stem and the values that differ between the elements: `lr-sweep[learning_rate=1e-4,seed=2]` (keys of
nested objects dotted, values written short and file-safe: other characters than letters, digits, `_.+-`
become `_`). `EXP/lr-sweep` names all of them. Duplicate names, non-object elements or an empty array are bad input.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.core.fsutil import natural_key, read_text
from lab.core.layout import SETTING_SUFFIXES as SUFFIXES
from lab.core.names import check_file_name, check_name
from lab.core.workspace import Experiment, Workspace
from lab.errors import BadInput, os_error_message

TYPE_CHECKING = False  # typing's costs `lab status` an import; this is only for the type checker
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Setting:
    """One setting file of an experiment."""

    experiment: Experiment
    name: str
    path: Path
    sweep: str | None = None  # the sweep (file stem) this setting is one element of, if any

    @property
    def id(self) -> str:
        return f"{self.experiment.name}/{self.name}"

    def where(self) -> str:
        """The file as users name it in messages: `experiments/EXP/settings/s1.json`."""
        try:
            return str(self.path.relative_to(self.experiment.workspace.root))
        except ValueError:
            return str(self.path)

    def resolve(self) -> dict:
        """The setting as one JSON object; malformed files raise BadInput naming file, line and column."""
        if self.sweep is not None:
            return _resolve_member(self)
        return resolve_file(self.path, where=self.where())


def list_settings(exp: Experiment) -> list[Setting]:
    """The experiment's settings: files in natural order, a sweep's elements in their order (a bad sweep raises)."""
    if not exp.settings_dir.is_dir():
        return []
    found: dict[str, Path] = {}
    for path in exp.settings_dir.iterdir():
        if path.suffix in SUFFIXES and path.is_file() and not path.name.startswith("."):
            if path.stem in found:
                raise BadInput(f"{exp.settings_dir}: two settings named {path.stem!r} ({found[path.stem].name}, {path.name})")
            found[path.stem] = path
    out: list[Setting] = []
    names: dict[str, str] = {}
    for stem in sorted(found, key=natural_key):
        path = found[stem]
        members = _sweep_members(exp, path) if path.suffix == ".jsonnet" else None
        for setting in members or [Setting(exp, stem, path)]:
            if setting.name in names:
                raise BadInput(f"{_where(exp, path)}: setting {setting.name!r} is also defined by {names[setting.name]}")
            names[setting.name] = path.name
            out.append(setting)
    return out


def find_setting(exp: Experiment, name: str) -> Setting:
    found = find_settings(exp, name)
    if len(found) > 1:
        raise BadInput(f"{name!r} is a sweep of {len(found)} settings: name one of them (lab show {exp.name} lists them)")
    return found[0]


def find_settings(exp: Experiment, name: str) -> list[Setting]:
    """The setting named `name`, or every element of the sweep named `name`."""
    check_setting_name(name)
    settings = list_settings(exp)
    exact = [s for s in settings if s.name == name]
    found = exact or [s for s in settings if s.sweep == name]
    if found:
        return found
    from lab.core.keys import unknown_name

    names = list(dict.fromkeys([*(s.name for s in settings), *(s.sweep for s in settings if s.sweep)]))
    raise BadInput(f"no setting {name!r} in {exp.settings_dir} (expected {name}.json or {name}.jsonnet)"
                   f"{unknown_name(name, names, f'settings of {exp.name}')}")


# -- sweeps ------------------------------------------------------------------------------------------------

SWEEP_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+\[[A-Za-z0-9_.,=+-]*\]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")
MAX_NAME = 180  # the record file adds `.settings.json`; file names stop at 255 bytes


def check_setting_name(name: str) -> str:
    """A setting name: a file stem (check_name), or a sweep element's `stem[key=value,...]`."""
    if SWEEP_NAME_RE.fullmatch(name) and not name.startswith("."):
        return name
    return check_name(name, "setting")


def sweep_member(exp: Experiment, name: str) -> Setting:
    """The Setting of a sweep element known only by name (a queued job), without evaluating the sweep."""
    stem = name.partition("[")[0]
    return Setting(exp, name, exp.settings_dir / f"{stem}.jsonnet", sweep=stem)


def _evaluate_quietly(path: Path):
    try:
        return _evaluate_jsonnet(path, str(path))
    except BadInput:
        return None  # not listed as a sweep: resolving the setting reports the error with its position


def _sweep_members(exp: Experiment, path: Path) -> list[Setting] | None:
    value = _evaluate_quietly(path)
    if not isinstance(value, list):
        return None
    return [Setting(exp, name, path, sweep=path.stem) for name in sweep_names(path, value, _where(exp, path))]


def _where(exp: Experiment, path: Path) -> str:
    try:
        return str(path.relative_to(exp.workspace.root))
    except ValueError:
        return str(path)


def sweep_names(path: Path, elements: list, where: str) -> list[str]:
    """One name per element: the file stem and the values that differ; bad sweeps raise BadInput naming the file."""
    if not elements:
        raise BadInput(f"{where}: an empty sweep (the array needs at least one settings object)")
    for i, element in enumerate(elements, 1):
        if not isinstance(element, dict):
            raise BadInput(f"{where}: sweep element {i} is {_kind(element)}, not an object (a sweep is an array of settings objects)")
    flat = [flatten(e) for e in elements]
    keys: dict[str, None] = {}
    for f in flat:
        keys.update(dict.fromkeys(f))
    missing = object()
    varying = [k for k in keys if len({json.dumps(f.get(k, missing), sort_keys=True, default=str) for f in flat}) > 1]
    names, seen = [], {}
    for i, f in enumerate(flat, 1):
        parts = [f"{_safe(k)}={_short(f[k]) if k in f else 'none'}" for k in varying]
        name = f"{path.stem}[{','.join(parts)}]" if parts else path.stem
        if len(name) > MAX_NAME:
            digest = hashlib.sha256(name.encode()).hexdigest()[:12]
            name = f"{path.stem}[{digest}]"
        if name in seen:
            raise BadInput(f"{where}: sweep elements {seen[name]} and {i} both give the setting name {name!r} (identical elements, or values that differ only in characters a file name cannot hold)")
        seen[name] = i
        names.append(name)
    return names


def _kind(value) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def flatten(data: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: {"model": {"layers": 2}} -> {"model.layers": 2} (an empty object stays one
    key; None is {}). The one flattening of settings: sweep names, `lab diff`, the book's tables, the API's rows."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text) or "_"


def _short(value) -> str:
    """A value as it reads best in a name: 0.0001 -> 1e-4, true, null, strings made file-safe."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        plain = repr(value)
        mantissa, _, exponent = f"{value:.15e}".partition("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        sci = f"{mantissa}e{int(exponent)}"
        if float(sci) == value and len(sci) < len(plain):
            return sci
        return plain
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _safe(value)
    return _safe(json.dumps(value, separators=(",", ":"), sort_keys=True))


def _resolve_member(setting: Setting) -> dict:
    where = setting.where()
    value = _evaluate_jsonnet(setting.path, where) if setting.path.is_file() else None
    if value is None:
        raise BadInput(f"{where}: no such settings file")
    if not isinstance(value, list):
        raise BadInput(f"{where}: no longer a sweep (its value is not an array), so it has no setting {setting.name!r}")
    for name, element in zip(sweep_names(setting.path, value, where), value):
        if name == setting.name:
            return element
    raise BadInput(f"{where}: the sweep no longer has a setting {setting.name!r}")


def resolve_file(path: Path, where: str | None = None) -> dict:
    """Resolve a JSON or jsonnet file to a dict."""
    where = where or str(path)
    if not path.is_file():
        raise BadInput(f"{where}: no such settings file")
    if path.suffix == ".jsonnet":
        value = _evaluate_jsonnet(path, where)
    else:
        text = read_text(path, where)
        try:
            value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
        except json.JSONDecodeError as e:
            hint = ""
            if text[e.pos : e.pos + 2] in ("//", "/*") or text[e.pos : e.pos + 1] == "#":
                hint = f" (JSON has no comments; jsonnet has: rename it to {path.stem}.jsonnet)"
            raise BadInput(f"{where}:{e.lineno}:{e.colno}: {e.msg}{hint}") from None
        except ValueError as e:  # NaN, Infinity, 1e400: Python reads them, strict JSON (and jsonnet) has no such numbers
            raise BadInput(f"{where}: {e} is not a JSON number lab can keep (write null or a string)") from None
        except RecursionError:
            raise BadInput(f"{where}: nested too deeply to read") from None
    if isinstance(value, list) and path.suffix == ".jsonnet":
        raise BadInput(f"{where}: a sweep (an array of settings objects) has one setting per element; name them as {path.stem}[...] (lab show EXP lists them)")
    if not isinstance(value, dict):
        raise BadInput(f"{where}:1:1: a setting must be a JSON object ({{...}}), not {type(value).__name__}"
                       + (" (a sweep is a .jsonnet file whose value is an array of objects)" if isinstance(value, list) else ""))
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadInput(f"{where}: a string holds {e.object[e.start:e.end]!r}, half of a UTF-16 pair, which is no "
                       "character") from None
    return value


def _not_json(constant: str):
    raise ValueError(constant)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def resolve_sweep_or_setting(path: Path, where: str | None = None) -> dict | list[dict]:
    """A settings file's value: one setting (a dict), or a sweep's settings (a list of dicts, checked)."""
    where = where or str(path)
    if path.suffix == ".jsonnet" and path.is_file():
        value = _evaluate_jsonnet(path, where)
        if isinstance(value, list):
            sweep_names(path, value, where)
            return value
    return resolve_file(path, where)


# jsonnet reports errors as "STATIC ERROR: /abs/path.jsonnet:3:5-6: message" or as "RUNTIME ERROR: message\n\t/abs/path:3:5-20\t..."
_JSONNET_POS = re.compile(r"(?P<file>[^\s:][^:\n]*?):(?P<line>\d+):(?P<col>\d+)(?:-\d+)?")
_JSONNET_RANGE = re.compile(r"(?P<file>[^\s:][^:\n]*?):\((?P<line>\d+):(?P<col>\d+)\)-\(\d+:\d+\)")


def _evaluate_jsonnet(path: Path, where: str) -> object:
    import _jsonnet

    read_text(path, where)  # jsonnet would read bytes that are not UTF-8 as U+FFFD without a word
    try:
        text = _jsonnet.evaluate_file(str(path))
    except RuntimeError as e:
        raise BadInput(_jsonnet_message(str(e), path, where)) from None
    except UnicodeDecodeError:  # std.char(55296): a lone surrogate, which UTF-8 cannot carry
        raise BadInput(f"{where}: the result holds half of a UTF-16 pair (std.char of 55296-57343), which is no character") from None
    return json.loads(text)


def _jsonnet_message(raw: str, path: Path, where: str) -> str:
    lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
    head = lines[0] if lines else "jsonnet error"
    kind, _, rest = head.partition(": ")
    if kind not in ("STATIC ERROR", "RUNTIME ERROR"):
        rest = head
    # Find where: the message itself (static errors) or the first stack line (runtime errors).
    for candidate in [rest, *lines[1:]]:
        m = _JSONNET_RANGE.search(candidate) or _JSONNET_POS.search(candidate)
        if m:
            file = m.group("file").strip()
            shown = where if Path(file).resolve() == path.resolve() else _relative_to(file, path, where)
            message = rest.replace(m.group(0), "").strip(" :") if candidate is rest else rest
            return f"{shown}:{m.group('line')}:{m.group('col')}: {message or kind.lower()}"
    return f"{where}: {rest}"


def _relative_to(file: str, path: Path, where: str) -> str:
    """Show an imported file next to the setting that imported it."""
    base = Path(where).parent
    try:
        return str(base / Path(file).resolve().relative_to(path.parent.resolve()))
    except ValueError:
        return file


def settings_hash(resolved: dict) -> str:
    """A stable hash of resolved settings (key order does not matter)."""
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_target(target: str) -> tuple[str, str | None]:
    """`EXP` or `EXP/SETTING` as (experiment, setting or None), both names checked."""
    exp_name, _, setting_name = target.strip().rstrip("/").partition("/")
    check_name(exp_name)
    if setting_name:
        check_setting_name(setting_name)
    return exp_name, setting_name or None


def select(workspace: Workspace, targets: list[str]) -> list[Setting]:
    """The settings named by TARGETs (`EXP` for all of its settings, or `EXP/SETTING`), in order, without repeats.

    This is what gets queued, so each setting's file name must also be safe to show and to name later
    (`lab logs EXP/SETTING`): a tab, newline or other control character in it is refused here.
    """
    chosen: list[Setting] = []
    seen: set[str] = set()
    for target in targets:
        exp_name, setting_name = parse_target(target)
        exp = workspace.experiment(exp_name)
        if setting_name:
            found = find_settings(exp, setting_name)
        else:
            found = list_settings(exp)
            if not found:
                raise BadInput(f"experiment {exp.name!r} has no settings: add {exp.settings_dir}/NAME.json")
        for setting in found:
            check_file_name(setting.name, "setting", setting.where().rpartition("/")[0] or str(exp.settings_dir))
            if setting.id not in seen:
                seen.add(setting.id)
                chosen.append(setting)
    return chosen


def listing(workspace: Workspace) -> list[dict]:
    """Every experiment as `{name, title, tags, settings, path, error}`. One whose report or settings cannot be
    read is listed all the same, with the reason in `error` (else None), so one bad file hides nothing else."""
    rows = []
    for exp in workspace.experiments():
        row = {"name": exp.name, "title": exp.name, "tags": [], "settings": [], "path": str(exp.dir), "error": None}
        try:
            from lab.core.keys import check_report

            settings = list_settings(exp)
            row["settings"] = [s.name for s in settings]
            row["title"], row["tags"] = exp.title(), exp.tags()
            check_report(exp.meta(), exp.report_path)
            for setting in settings:
                setting.resolve()  # a setting that cannot be read is this experiment's error
        except BadInput as e:
            row["error"] = str(e)
        except OSError as e:  # report.md is a directory, say
            row["error"] = os_error_message(e)
        rows.append(row)
    return rows
