"""Settings: one JSON or jsonnet file per run in `experiments/EXP/settings/`.

Each `*.json` / `*.jsonnet` file directly in `settings/` is one setting, named by its stem; `*.libsonnet` files
are shared bases that settings import (imports resolve relative to the importing file). A setting resolves to one
JSON object: what the program receives and what the run record keeps.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from lab.core.fsutil import natural_key, read_text
from lab.core.layout import SETTING_SUFFIXES as SUFFIXES
from lab.core.names import check_file_name, check_name
from lab.errors import BadInput

TYPE_CHECKING = False  # not typing's: `lab status` imports this module, and typing costs it a millisecond or two
if TYPE_CHECKING:  # settings belong to an experiment, but the workspace imports this module, not the reverse
    from lab.core.workspace import Experiment


@dataclass(frozen=True)
class Setting:
    """One setting file of an experiment."""

    experiment: Experiment
    name: str
    path: Path

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
        return resolve_file(self.path, where=self.where())


def list_settings(exp: Experiment) -> list[Setting]:
    if not exp.settings_dir.is_dir():
        return []
    found: dict[str, Path] = {}
    for path in exp.settings_dir.iterdir():
        if path.suffix in SUFFIXES and path.is_file() and not path.name.startswith("."):
            if path.stem in found:
                raise BadInput(f"{exp.settings_dir}: two settings named {path.stem!r} ({found[path.stem].name}, {path.name})")
            found[path.stem] = path
    return [Setting(exp, name, found[name]) for name in sorted(found, key=natural_key)]


def find_setting(exp: Experiment, name: str) -> Setting:
    check_name(name, "setting")
    for setting in list_settings(exp):
        if setting.name == name:
            return setting
    raise BadInput(f"no setting {name!r} in {exp.settings_dir} (expected {name}.json or {name}.jsonnet)")


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
    if not isinstance(value, dict):
        raise BadInput(f"{where}:1:1: a setting must be a JSON object ({{...}}), not {type(value).__name__}")
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
        check_name(setting_name, "setting")
    return exp_name, setting_name or None


def select(workspace, targets: list[str]) -> list[Setting]:
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
            found = [find_setting(exp, setting_name)]
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
