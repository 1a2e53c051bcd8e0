"""Metrics from the files programs already write in the run's output directory (and `TENSORBOARD_LOGGING_DIR`,
which lab points there too), read as they grow and once more when the job ends:

- `trainer_state.json` of the transformers Trainer (`log_history`, with real steps), the newest of the output
  directory's and its `checkpoint-*/` ones; half-written, it is skipped until it is whole;
- `*_results.json` / `all_results.json` (the Trainer's `save_metrics`): final values, no step;
- TensorBoard event files (`*tfevents*`, lab.runs.capture.tfevents), read incrementally;
- Lightning's `metrics.csv` (sparse rows, columns that appear mid-file, a header written again) and the
  `hparams.yaml` beside it.
Only files changed since the attempt started count (`since`): an earlier attempt's files in the same directory
are not this attempt's metrics.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from lab.runs.capture.tfevents import EventReader

MAX_DEPTH = 5
MAX_ENTRIES = 20_000  # a directory walk stops here (an output directory full of shards)


def _walk(root: Path, since: float):
    """(path, stat) of the files under root that may be metrics files, changed since `since`."""
    seen = 0
    stack = [(str(root), 0)]
    while stack:
        path, depth = stack.pop()
        try:
            entries = os.scandir(path)
        except OSError:
            continue
        with entries:
            for entry in entries:
                seen += 1
                if seen > MAX_ENTRIES:
                    return
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth < MAX_DEPTH and not name.startswith("."):
                            stack.append((entry.path, depth + 1))
                        continue
                    if not ("tfevents" in name or name in ("trainer_state.json", "metrics.csv", "hparams.yaml")
                            or name.endswith("_results.json")):
                        continue
                    st = entry.stat()
                except OSError:
                    continue
                if st.st_mtime >= since:
                    yield Path(entry.path), st


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


class Files:
    """The metrics files of one output directory, re-read as they change."""

    def __init__(self, roots, since: float = 0.0):
        self.roots = [Path(r) for r in roots]
        self.since = since - 2.0  # file times are coarse
        self.events: dict[Path, EventReader] = {}
        self.event_points: dict[str, list] = {}
        self.stamps: dict[Path, tuple] = {}
        self.trainer_state: dict[str, list] = {}
        self.results: dict[str, object] = {}
        self.csv: dict[str, list] = {}
        self.hparams: dict[str, object] = {}
        self.notes: list[str] = []
        self._states: dict[Path, tuple] = {}
        self._csv_files: dict[Path, dict] = {}
        self._results_files: dict[Path, dict] = {}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def poll(self) -> bool:
        """Read what changed; whether anything did."""
        changed = False
        states = []
        for root in self.roots:
            for path, st in _walk(root, self.since):
                name = path.name
                if "tfevents" in name:
                    reader = self.events.get(path)
                    if reader is None:
                        reader = self.events[path] = EventReader(path)
                    if st.st_size > reader.offset:
                        for tag, step, value in reader.read():
                            self.event_points.setdefault(tag, []).append((step, value))
                            changed = True
                        for n in reader.notes:
                            self.note(n)
                    continue
                stamp = (st.st_mtime_ns, st.st_size)
                if name == "trainer_state.json":
                    states.append((path, stamp))
                    continue
                if self.stamps.get(path) == stamp:
                    continue
                if name == "metrics.csv":
                    if self._read_csv(path):
                        self.stamps[path] = stamp
                        changed = True
                elif name == "hparams.yaml":
                    self._read_hparams(path)
                    self.stamps[path] = stamp
                elif name.endswith("_results.json"):
                    data = _json(path)
                    if isinstance(data, dict):
                        self._results_files[path] = {k: v for k, v in data.items() if _number(v) is not None}
                        self.stamps[path] = stamp
                        changed = True
                    else:
                        self.note(f"{path}: not (yet) a JSON object; skipped")
        if self._results_files:
            merged: dict = {}
            # all_results.json holds the others' keys: read it first so that the split files win on equal keys
            for path in sorted(self._results_files, key=lambda p: (p.name != "all_results.json", str(p))):
                merged.update(self._results_files[path])
            self.results = merged
        if states and self._read_states(states):
            changed = True
        return changed

    def _read_states(self, states) -> bool:
        """Use the newest whole trainer_state.json (largest global_step; the output directory's own on a tie)."""
        for path, stamp in states:
            if self.stamps.get(path) == stamp:
                continue
            data = _json(path)
            if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
                self.note(f"{path}: not a whole trainer state (being written?); skipped")
                continue
            self.stamps[path] = stamp
            step = data.get("global_step") if isinstance(data.get("global_step"), int) else 0
            self._states[path] = ((step, "checkpoint-" not in path.parent.name), _log_history(data["log_history"]))
        if not self._states:
            return False
        best = max(self._states.values(), key=lambda s: s[0])[1]
        if best == self.trainer_state:
            return False
        self.trainer_state = best
        return True

    def _read_csv(self, path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return False
        text = raw.decode("utf-8", "replace")
        if not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]  # the last row is being written
        header = None
        points: dict[str, list] = {}
        for i, row in enumerate(csv.reader(io.StringIO(text))):
            if not row:
                continue
            if header is None or (any(row) and not any(_is_number(c) for c in row if c)):
                header = row  # the first line, or a header written again with new columns
                continue
            cells = dict(zip(header, row))
            step = _int(cells.get("step"))
            if step is None:
                step = i
            for key, cell in cells.items():
                if key == "step" or not cell:
                    continue
                value = _parse(cell)
                if value is not None:
                    points.setdefault(key, []).append((step, value))
        self._csv_files[path] = points
        merged: dict[str, list] = {}
        for file_points in self._csv_files.values():
            for key, pts in file_points.items():
                merged.setdefault(key, []).extend(pts)
        self.csv = merged
        return True

    def _read_hparams(self, path: Path) -> None:
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, yaml.YAMLError):
            self.note(f"{path}: not YAML; skipped")
            return
        if isinstance(data, dict):
            self.hparams.update(_flat(data))

    def sources(self) -> dict[str, dict[str, list]]:
        """{source: {metric: [(step, value)]}} of the sources with real steps, best first."""
        events = dict(self.event_points)
        if self.trainer_state:
            # The Trainer's TensorBoard callback writes its logs again as train/K and eval/K: one copy is enough.
            for tag in list(events):
                head, _, rest = tag.partition("/")
                if (head == "train" and rest in self.trainer_state) or (head == "eval" and f"eval_{rest}" in self.trainer_state):
                    del events[tag]
        hp = events.get("hp_metric")
        if hp is not None and all(v == -1 for _, v in hp):  # Lightning's placeholder
            del events["hp_metric"]
        return {"trainer_state": self.trainer_state, "tfevents": events, "csv": self.csv}


def _log_history(history: list) -> dict[str, list]:
    points: dict[str, list] = {}
    for entry in history:
        if not isinstance(entry, dict):
            continue
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        for key, value in entry.items():
            if key != "step" and _number(value) is not None:
                points.setdefault(key, []).append((step, value))
    return points


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[name] = value
        else:
            out[name] = str(value)
    return out


def _json(path: Path):
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _is_number(text: str) -> bool:
    return _parse(text) is not None


def _parse(cell: str):
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        return None
    return value


def _int(cell):
    if cell is None:
        return None
    try:
        return int(float(cell))
    except ValueError:
        return None
