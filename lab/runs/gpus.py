"""What a run needs and what the local runner may run at once: the GPUs it hands out, how many jobs share one,
its CPU lanes (here, not in runs/local, because the Slurm executor reads `gpus_per_run` too).

In `lab.yaml` (the machine's lanes):

    gpus: auto            # auto | [0, 1, 2, 3] | none (unset: lab hands out no GPU, as before)
    jobs_per_gpu: 1       # a number above 1 packs that many jobs onto each GPU
    max_parallel: 1       # jobs at once that use no GPU (default 1: one after another)
    gpus_per_run: 1       # GPUs each job gets (default 1 when lab hands out GPUs)

In a report's front matter, for that experiment's jobs:

    gpus: [2, 3]          # only these of the lab's GPUs (none: its jobs use no GPU)
    jobs_per_gpu: 4       # its jobs are small: four share a GPU
    gpus_per_run: 2       # or per setting: {big: 2, "*-xl": 4} (first matching pattern wins; else lab.yaml's)
    max_parallel: 2       # at most two of its jobs at once

Why the number of GPUs a run needs lives in the report and not in the settings file: a setting goes to the
program verbatim (lab's training program refuses unknown keys, and so should any careful program), so a key
that lab would strip first would make the file mean different things to lab and to `python run.py settings.json`.
The report already says how a setting runs (its `command`); `gpus_per_run` with patterns covers the one large
setting among small ones.

`LAB_GPUS=0,1,2,3` in the runner's environment is the GPU list whatever lab.yaml says (`LAB_GPUS=` or `none`: no
GPU), so tests use pretend GPUs and a job that itself runs lab uses only its own GPUs (each job gets `LAB_GPUS`
naming them). `auto` takes `CUDA_VISIBLE_DEVICES` when it is set (what this process may use), else asks NVML (the
`nvidia-ml-py` bindings, when installed) or `nvidia-smi`, and finds no GPU on a machine without them.

A job given GPUs gets `CUDA_VISIBLE_DEVICES` and `LAB_GPUS` naming them; while lab hands out GPUs, a job given
none gets `CUDA_VISIBLE_DEVICES=` (it must not take a GPU another job was given). Without GPUs to hand out, lab
sets neither, as before.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from lab.errors import BadInput
from lab.runs.slots import Held, Need, Plan, Pool, schedule, why_impossible

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace

KEYS = ("gpus", "jobs_per_gpu", "max_parallel", "gpus_per_run", "gpu_check", "gpu_free_below")
# Other keys lab reads from lab.yaml or a report, so only near misses of ours are called typos.
_OTHER_KEYS = {"title", "tags", "command", "executor", "slurm", "notify", "papers", "date", "author", "authors"}
DETECT_TIMEOUT_S = 10.0
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:/.-]*")


@dataclass(frozen=True)
class Lanes:
    """The runner's lanes: the GPUs it hands out (none: it manages no GPU), its CPU lanes and the defaults."""

    gpus: tuple[str, ...] = ()
    cpu: int = 1
    jobs_per_gpu: int = 1
    gpus_per_run: object = None  # lab.yaml's default: int or {pattern: int}; None: 1 with GPUs, else 0
    source: str = "unset"  # where the GPU list came from: LAB_GPUS, lab.yaml, CUDA_VISIBLE_DEVICES, NVML, ...
    order_env: dict = field(default_factory=dict)  # extra environment for jobs (CUDA_DEVICE_ORDER)

    @property
    def managed(self) -> bool:
        return bool(self.gpus)

    @property
    def pool(self) -> Pool:
        return Pool(gpus=self.gpus, cpu=self.cpu)

    def to_json(self) -> dict:
        return {"gpus": list(self.gpus), "jobs_per_gpu": self.jobs_per_gpu, "max_parallel": self.cpu,
                "source": self.source}

    def describe(self) -> str:
        """One line for the runner's log and `lab status`: `4 GPUs (0,1,2,3 from LAB_GPUS), 2 jobs per GPU, ...`."""
        if not self.gpus:
            gpu = f"no GPU handed out ({self.source})" if self.source not in ("unset", "lab.yaml") else "no GPU handed out"
        else:
            gpu = f"{len(self.gpus)} GPU{'s' if len(self.gpus) != 1 else ''} ({','.join(self.gpus)} from {self.source})"
            if self.jobs_per_gpu > 1:
                gpu += f", {self.jobs_per_gpu} jobs per GPU"
        return f"{gpu}, {self.cpu} CPU lane{'s' if self.cpu != 1 else ''}"


# -- reading lab.yaml and reports ---------------------------------------------------------------------------


def parse_gpu_list(value, where: str, allow_auto: bool = True):
    """`auto`, `none` or a list of GPU ids (ints or CUDA ids such as `GPU-5a3f...`, `MIG-...`) -> 'auto' or a tuple."""
    if value is None or value is False:
        return ()
    if isinstance(value, bool):
        raise BadInput(f"{where}: gpus must be auto, none or a list such as [0, 1]")
    if isinstance(value, int):
        raise BadInput(f"{where}: gpus: {value} is ambiguous: write [{', '.join(map(str, range(max(value, 1))))}] "
                       f"for {value} GPUs, [{value}] for GPU {value}, or auto")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "auto":
            if not allow_auto:
                raise BadInput(f"{where}: gpus: auto is not allowed here; name the GPUs, such as 0,1")
            return "auto"
        if text.lower() in ("none", ""):
            return ()
        value = [part.strip() for part in text.split(",")]
    if not isinstance(value, (list, tuple)):
        raise BadInput(f"{where}: gpus must be auto, none or a list such as [0, 1], not {type(value).__name__}")
    ids: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise BadInput(f"{where}: gpus: {item!r} is not a GPU id (a number such as 0, or a UUID such as GPU-5a3f...)")
        text = str(item).strip()
        if isinstance(item, int) and item < 0 or not _ID_RE.fullmatch(text):
            raise BadInput(f"{where}: gpus: {item!r} is not a GPU id (a number such as 0, or a UUID such as GPU-5a3f...)")
        if text in ids:
            raise BadInput(f"{where}: gpus: GPU {text} is listed twice")
        ids.append(text)
    return tuple(ids)


def _positive_int(value, where: str, key: str, zero: bool = False) -> int:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadInput(f"{where}: {key} must be a whole number of at least {low}, not {value!r}")
    return value


def _gpus_per_run(value, where: str):
    if isinstance(value, dict):
        if not value:
            raise BadInput(f"{where}: gpus_per_run must not be an empty mapping")
        out = {}
        for pattern, n in value.items():
            if not isinstance(pattern, str) or not pattern:
                raise BadInput(f"{where}: gpus_per_run: {pattern!r} is not a setting name or pattern such as 'big-*'")
            out[pattern] = _positive_int(n, where, f"gpus_per_run[{pattern!r}]", zero=True)
        return out
    return _positive_int(value, where, "gpus_per_run", zero=True)


def _check_typos(source: dict, where: str) -> None:
    for key in source:
        if not isinstance(key, str) or key in KEYS or key in _OTHER_KEYS:
            continue
        close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.8)
        if close:
            raise BadInput(f"{where}: unknown key {key!r} (did you mean {close[0]!r}?)")


def options(source: dict, where: str, report: bool = False) -> dict:
    """The lane keys of lab.yaml (or of a report's front matter), checked: one BadInput line naming `where`."""
    _check_typos(source, where)
    out: dict = {}
    if "gpus" in source:
        value = source["gpus"]
        if report and value is None:
            value = "auto"
        out["gpus"] = parse_gpu_list(value, where)
    for key in ("jobs_per_gpu", "max_parallel"):
        if source.get(key) is not None:
            out[key] = _positive_int(source[key], where, key)
    if source.get("gpus_per_run") is not None:
        out["gpus_per_run"] = _gpus_per_run(source["gpus_per_run"], where)
    return out


def lanes_for(workspace: Workspace, env: dict | None = None) -> Lanes:
    """The lanes of a runner started with `env` (default: this process's environment) in this lab."""
    env = os.environ if env is None else env
    where = str(Path(workspace.root) / "lab.yaml")
    opts = options(workspace.config, where)
    order_env: dict = {}
    if "LAB_GPUS" in env:
        gpus, source = parse_gpu_list(env["LAB_GPUS"], "LAB_GPUS"), "LAB_GPUS"
        if gpus == "auto":
            gpus, source = detect(env)
    else:
        gpus, source = opts.get("gpus", ()), ("lab.yaml" if "gpus" in opts else "unset")
        if gpus == "auto":
            gpus, source = detect(env)
    if source in ("NVML", "nvidia-smi") and "CUDA_DEVICE_ORDER" not in env:
        # Their indices count GPUs in PCI bus order; CUDA's default order (fastest first) may differ.
        order_env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return Lanes(gpus=tuple(gpus), cpu=opts.get("max_parallel", 1), jobs_per_gpu=opts.get("jobs_per_gpu", 1),
                 gpus_per_run=opts.get("gpus_per_run"), source=source, order_env=order_env)


def need_for(exp, setting: str, lanes: Lanes, meta: dict | None = None) -> Need:
    """What one job of experiment `exp` (its setting `setting`) needs on these lanes (`meta`: its report's checked
    lane keys, when the caller has them already)."""
    where = str(exp.report_path)
    if meta is None:
        meta = options(exp.meta(), where, report=True)
    exp_gpus = meta.get("gpus", "auto")
    k = _match(meta.get("gpus_per_run"), setting)
    if k is None:  # the report says nothing for this setting: lab.yaml's default
        k = _match(lanes.gpus_per_run, setting)
    if exp_gpus == ():
        if k:
            raise BadInput(f"{where}: gpus: none, but gpus_per_run asks {k} for {setting}")
        k = 0
    elif k is None:
        k = 1 if lanes.managed else 0
    jobs_per_gpu = meta.get("jobs_per_gpu", lanes.jobs_per_gpu)
    cap = meta.get("max_parallel")
    return Need(gpus=k, share=Fraction(1, jobs_per_gpu), allowed=exp_gpus if k and exp_gpus != "auto" else None,
                group=exp.name if cap else None, cap=cap)


def gpus_per_run(exp, setting: str) -> int | None:
    """How many GPUs a setting's run asks for (`gpus_per_run` of the report, else of lab.yaml; `gpus: none` in
    the report: 0), or None when neither says; the Slurm executor makes it `--gres=gpu:N`."""
    lab_opts = options(exp.workspace.config, str(Path(exp.workspace.root) / "lab.yaml"))
    meta = options(exp.meta(), str(exp.report_path), report=True)
    if meta.get("gpus") == ():
        return 0
    k = _match(meta.get("gpus_per_run"), setting)
    return k if k is not None else _match(lab_opts.get("gpus_per_run"), setting)


def _match(per_run, setting: str) -> int | None:
    if per_run is None or isinstance(per_run, int):
        return per_run
    for pattern, n in per_run.items():
        if fnmatch.fnmatchcase(setting, pattern):
            return n
    return None


def check_fits(setting, lanes: Lanes) -> Need:
    """The need of a setting, refused (BadInput) when these lanes can never run it; for `lab run` at queue time."""
    need = need_for(setting.experiment, setting.name, lanes)
    reason = why_impossible(lanes.pool, need)
    if reason is not None:
        hint = "" if lanes.managed else " (set gpus: auto or a list in lab.yaml, or LAB_GPUS)"
        raise BadInput(f"{setting.where()}: cannot run here: {reason}{hint}")
    return need


def plan(workspace: Workspace, lanes: Lanes, running: list[dict], queued, outside=()) -> Plan:
    """One round of the runner: which of the `queued` rows (queue order) start now, on which GPUs.

    `outside`: what is taken by others on this machine (`Held`s from `lab.runs.gpushare`: busy GPUs, other labs'
    slots); the scheduler counts them as it counts the runner's own running jobs.

    `running` rows carry `lane` (what `lane_json` wrote when they started), so a report edited since cannot change
    what a running job holds. A queued job whose report became unreadable or asks for what the lanes never have is
    in `impossible` with the reason. The plan's keys are the rows' `id`s; each report is read once a round.
    """
    held = [held_from(row.get("lane")) for row in running] + list(outside)
    metas: dict = {}
    broken: list = []

    def needs():
        for row in queued:
            try:
                need = _need_of_row(workspace, lanes, row, metas)
            except (BadInput, OSError, ValueError) as e:
                broken.append((row["id"], str(e)))
                continue
            result.needs[row["id"]] = need
            yield row["id"], need

    result = Plan()
    planned = schedule(lanes.pool, held, needs())
    result.start, result.impossible = planned.start, broken + planned.impossible
    return result


def _need_of_row(workspace: Workspace, lanes: Lanes, row: dict, metas: dict) -> Need:
    name = row["experiment"]
    if name not in metas:
        try:
            exp = workspace.experiment(name, must_exist=False)
            metas[name] = (exp, options(exp.meta(), str(exp.report_path), report=True), None)
        except (BadInput, OSError, ValueError) as e:
            metas[name] = (None, None, e)
    exp, meta, error = metas[name]
    if error is not None:
        raise error
    return need_for(exp, row["setting"], lanes, meta=meta)


def lane_json(need: Need, gpus: tuple[str, ...], env: dict | None = None) -> str:
    """What a started job holds, for its queue row: its GPUs, its share of each, its experiment's cap, and the
    environment its supervisor gives the program (`job_env`)."""
    return json.dumps({"gpus": list(gpus), "share": [need.share.numerator, need.share.denominator],
                       "group": need.group, "cap": need.cap, "env": env or {}})


def lane_of(text: str | None) -> dict:
    """A row's `lane` as a dict (`{}` for a job started without lanes or a damaged value)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def held_from(text: str | None) -> Held:
    """The `Held` of a running job from its row's `lane` (a job started before lanes holds one CPU lane)."""
    data = lane_of(text)
    if not data:
        return Held(Need(gpus=0))
    try:
        gpus = tuple(str(g) for g in data.get("gpus") or ())
        num, den = data.get("share") or (1, 1)
        cap = data.get("cap")
        need = Need(gpus=len(gpus), share=Fraction(int(num), int(den)), group=data.get("group") if cap else None,
                    cap=int(cap) if cap else None)
        return Held(need, gpus)
    except (TypeError, ValueError, ZeroDivisionError):
        return Held(Need(gpus=0))


def job_env(lanes: Lanes, gpus: tuple[str, ...]) -> dict:
    """The environment a job gets for the GPUs it was given ({} when lab hands out no GPU)."""
    if not lanes.managed:
        return {}
    names = ",".join(gpus)
    return {"CUDA_VISIBLE_DEVICES": names, "LAB_GPUS": names, **lanes.order_env}


# -- finding the GPUs ---------------------------------------------------------------------------------------


def detect(env: dict | None = None) -> tuple[tuple[str, ...], str]:
    """The GPUs this process may use, and how that was learnt: CUDA_VISIBLE_DEVICES, NVML, nvidia-smi, or none."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for part in visible.split(","):
            part = part.strip()
            # CUDA stops at the first entry that names no device.
            if not part or part == "-1" or not _ID_RE.fullmatch(part):
                break
            ids.append(part)
        return tuple(ids), "CUDA_VISIBLE_DEVICES"
    count = _nvml_count()
    if count is not None:
        return tuple(str(i) for i in range(count)), "NVML"
    ids = _nvidia_smi(env)
    if ids is not None:
        return ids, "nvidia-smi"
    return (), "no GPU found"


def _nvml_count() -> int | None:
    try:
        import pynvml  # nvidia-ml-py, optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return None
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _nvidia_smi(env) -> tuple[str, ...] | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=DETECT_TIMEOUT_S, env=dict(env), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    ids = tuple(line.strip() for line in out.stdout.splitlines() if line.strip().isdigit())
    return ids
