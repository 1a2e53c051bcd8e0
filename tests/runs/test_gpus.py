"""The local runner's lanes (lab.runs.gpus): lab.yaml and report keys, LAB_GPUS, finding the GPUs, job env."""

from __future__ import annotations

import stat
import sys
import types
from fractions import Fraction
from pathlib import Path

import pytest

from helpers import write_settings
from lab.core.workspace import Workspace
from lab.errors import BadInput
from lab.runs import gpus
from lab.runs.slots import Need
from lab.core.settings import find_setting

NO_GPU_ENV = {"PATH": "/nonexistent"}  # no nvidia-smi, no CUDA_VISIBLE_DEVICES, no LAB_GPUS


def ws_with(root: Path, yaml_text: str | None = None) -> Workspace:
    if yaml_text is not None:
        (root / "lab.yaml").write_text(yaml_text)
    return Workspace(root)


def set_front_matter(root: Path, exp: str, lines: str) -> None:
    report = root / "experiments" / exp / "report.md"
    report.write_text(report.read_text().replace("---\n", "---\n" + lines + "\n", 1))


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError


def fake_nvidia_smi(tmp_path: Path, output: str, code: int = 0) -> dict:
    """A pretend nvidia-smi (a real executable on PATH): this machine has no GPU."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "nvidia-smi"
    args_file = tmp_path / "nvidia-smi.args"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {args_file}\nprintf '{output}'\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bindir}:/usr/bin:/bin"}


# -- the machine's lanes ------------------------------------------------------------------------------------


def test_no_configuration_is_the_sequential_runner(lab_root, no_nvml):
    lanes = gpus.lanes_for(ws_with(lab_root), env=NO_GPU_ENV)
    assert (lanes.gpus, lanes.cpu, lanes.jobs_per_gpu, lanes.managed) == ((), 1, 1, False)
    assert gpus.job_env(lanes, ()) == {}
    assert lanes.describe() == "no GPU handed out, 1 CPU lane"


def test_lab_yaml_lists_gpus_packing_and_cpu_lanes(lab_root):
    ws = ws_with(lab_root, "gpus: [0, 1, 3]\njobs_per_gpu: 2\nmax_parallel: 4\n")
    lanes = gpus.lanes_for(ws, env=NO_GPU_ENV)
    assert (lanes.gpus, lanes.cpu, lanes.jobs_per_gpu, lanes.source) == (("0", "1", "3"), 4, 2, "lab.yaml")
    assert lanes.describe() == "3 GPUs (0,1,3 from lab.yaml), 2 jobs per GPU, 4 CPU lanes"
    assert lanes.to_json() == {"gpus": ["0", "1", "3"], "jobs_per_gpu": 2, "max_parallel": 4, "source": "lab.yaml"}


def test_gpu_uuids_and_a_comma_string(lab_root):
    ws = ws_with(lab_root, "gpus: 'GPU-5a3f0c1e-aaaa, MIG-1f2e/1/0'\n")
    assert gpus.lanes_for(ws, env=NO_GPU_ENV).gpus == ("GPU-5a3f0c1e-aaaa", "MIG-1f2e/1/0")


@pytest.mark.parametrize("value,expected", [("0,1,2,3", ("0", "1", "2", "3")), ("", ()), ("none", ()), (" 2 ", ("2",))])
def test_lab_gpus_overrides_lab_yaml(lab_root, value, expected):
    ws = ws_with(lab_root, "gpus: [0]\n")
    lanes = gpus.lanes_for(ws, env={**NO_GPU_ENV, "LAB_GPUS": value})
    assert lanes.gpus == expected and lanes.source == "LAB_GPUS"


def test_lab_gpus_auto_detects(lab_root, no_nvml):
    lanes = gpus.lanes_for(ws_with(lab_root), env={**NO_GPU_ENV, "LAB_GPUS": "auto", "CUDA_VISIBLE_DEVICES": "1,0"})
    assert lanes.gpus == ("1", "0") and lanes.source == "CUDA_VISIBLE_DEVICES"


def test_bad_lab_gpus_is_one_line(lab_root):
    with pytest.raises(BadInput, match=r"^LAB_GPUS: gpus: '0;1' is not a GPU id"):
        gpus.lanes_for(ws_with(lab_root), env={"LAB_GPUS": "0;1"})


# -- auto ---------------------------------------------------------------------------------------------------


def test_auto_finds_no_gpu_on_this_machine(lab_root, tmp_path):
    # The real nvidia-ml-py (when installed) finds no driver here, and there is no nvidia-smi: no GPU.
    lanes = gpus.lanes_for(ws_with(lab_root, "gpus: auto\n"), env=NO_GPU_ENV)
    assert lanes.gpus == () and lanes.source == "no GPU found" and not lanes.managed
    assert lanes.describe() == "no GPU handed out (no GPU found), 1 CPU lane"


def test_auto_asks_nvidia_smi(lab_root, tmp_path, no_nvml):
    env = fake_nvidia_smi(tmp_path, "0\\n1\\n2\\n3\\n")
    lanes = gpus.lanes_for(ws_with(lab_root, "gpus: auto\n"), env=env)
    assert lanes.gpus == ("0", "1", "2", "3") and lanes.source == "nvidia-smi"
    assert (tmp_path / "nvidia-smi.args").read_text().split() == ["--query-gpu=index", "--format=csv,noheader"]
    # nvidia-smi counts GPUs in PCI order: the jobs are told so.
    assert gpus.job_env(lanes, ("2",)) == {"CUDA_VISIBLE_DEVICES": "2", "LAB_GPUS": "2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_auto_with_a_failing_nvidia_smi_finds_none(lab_root, tmp_path, no_nvml):
    env = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.\\n", code=9)
    assert gpus.detect(env) == ((), "no GPU found")


def test_auto_asks_nvml_first(lab_root, tmp_path, monkeypatch):
    # A pretend NVML (no GPU here): the calls nvidia-ml-py offers.
    calls = []
    fake = types.SimpleNamespace(nvmlInit=lambda: calls.append("init"), nvmlDeviceGetCount=lambda: 2,
                                 nvmlShutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert gpus.detect(fake_nvidia_smi(tmp_path, "0\\n")) == (("0", "1"), "NVML")
    assert calls == ["init", "shutdown"]

    def no_driver():
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    assert gpus.detect(fake_nvidia_smi(tmp_path, "0\\n")) == (("0",), "nvidia-smi")


def test_auto_respects_cuda_visible_devices(no_nvml):
    assert gpus.detect({"CUDA_VISIBLE_DEVICES": "3,1"}) == (("3", "1"), "CUDA_VISIBLE_DEVICES")
    assert gpus.detect({"CUDA_VISIBLE_DEVICES": ""}) == ((), "CUDA_VISIBLE_DEVICES")
    assert gpus.detect({"CUDA_VISIBLE_DEVICES": "0,-1,2"}) == (("0",), "CUDA_VISIBLE_DEVICES")


def test_detect_does_not_import_a_gpu_stack():
    import subprocess

    code = ("import sys; from lab.runs import gpus; gpus.detect({'PATH': '/nonexistent'});"
            "print(sorted(m for m in ('torch', 'transformers', 'pynvml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("[]", "['pynvml']")
    assert "torch" not in out.stdout


# -- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,message", [
    ("gpus: 4\n", "gpus: 4 is ambiguous: write [0, 1, 2, 3] for 4 GPUs, [4] for GPU 4, or auto"),
    ("gpus: [0, 0]\n", "gpus: GPU 0 is listed twice"),
    ("gpus: [-1]\n", "gpus: -1 is not a GPU id (a number such as 0, or a UUID such as GPU-5a3f...)"),
    ("gpus: {a: 1}\n", "gpus must be auto, none or a list such as [0, 1], not dict"),
    ("gpus: true\n", "gpus must be auto, none or a list such as [0, 1]"),
    ("jobs_per_gpu: 0\n", "jobs_per_gpu must be a whole number of at least 1, not 0"),
    ("max_parallel: two\n", "max_parallel must be a whole number of at least 1, not 'two'"),
    ("max_parallel: 1.5\n", "max_parallel must be a whole number of at least 1, not 1.5"),
    ("gpus_per_run: {big: -1}\n", "gpus_per_run['big'] must be a whole number of at least 0, not -1"),
    ("gpu: auto\n", "unknown key 'gpu' (did you mean 'gpus'?)"),
    ("job_per_gpu: 2\n", "unknown key 'job_per_gpu' (did you mean 'jobs_per_gpu'?)"),
])
def test_bad_lab_yaml_is_one_line_naming_it(lab_root, text, message):
    with pytest.raises(BadInput) as e:
        gpus.lanes_for(ws_with(lab_root, text), env=NO_GPU_ENV)
    assert str(e.value) == f"{lab_root / 'lab.yaml'}: {message}"
    assert "\n" not in str(e.value)


def test_other_lab_yaml_keys_are_left_alone(lab_root):
    ws = ws_with(lab_root, "executor: local\nslurm: {partition: gpu}\nsomething_else: 1\n")
    assert gpus.lanes_for(ws, env=NO_GPU_ENV).gpus == ()


# -- what a job needs ---------------------------------------------------------------------------------------


def lanes4(**kw):
    return gpus.Lanes(gpus=("0", "1", "2", "3"), source="LAB_GPUS", **kw)


def test_a_job_needs_one_gpu_when_lab_hands_them_out_and_a_cpu_lane_otherwise(lab_root):
    write_settings(lab_root, "e", {"s.json": {}})
    exp = Workspace(lab_root).experiment("e")
    assert gpus.need_for(exp, "s", lanes4()) == Need(gpus=1)
    assert gpus.need_for(exp, "s", gpus.Lanes()) == Need(gpus=0)
    assert gpus.need_for(exp, "s", lanes4(jobs_per_gpu=3)).share == Fraction(1, 3)


def test_report_keys_per_experiment_and_per_setting(lab_root):
    write_settings(lab_root, "e", {"small.json": {}, "big-1.json": {}, "huge.json": {}})
    set_front_matter(lab_root, "e", "gpus: [1, 2, 3]\njobs_per_gpu: 2\nmax_parallel: 2\n"
                                    "gpus_per_run: {huge: 3, 'big-*': 2}")
    exp = Workspace(lab_root).experiment("e")
    lanes = lanes4()
    assert gpus.need_for(exp, "small", lanes) == Need(gpus=1, share=Fraction(1, 2), allowed=("1", "2", "3"), group="e", cap=2)
    assert gpus.need_for(exp, "big-1", lanes).gpus == 2
    assert gpus.need_for(exp, "huge", lanes).gpus == 3


def test_lab_yaml_gpus_per_run_is_the_default_and_the_report_wins(lab_root):
    write_settings(lab_root, "e", {"s.json": {}})
    write_settings(lab_root, "f", {"s.json": {}})
    set_front_matter(lab_root, "f", "gpus_per_run: 1")
    exp_e, exp_f = Workspace(lab_root).experiment("e"), Workspace(lab_root).experiment("f")
    lanes = lanes4(gpus_per_run=2)
    assert gpus.need_for(exp_e, "s", lanes).gpus == 2
    assert gpus.need_for(exp_f, "s", lanes).gpus == 1


def test_a_cpu_only_experiment(lab_root):
    write_settings(lab_root, "e", {"s.json": {}})
    set_front_matter(lab_root, "e", "gpus: none")
    exp = Workspace(lab_root).experiment("e")
    assert gpus.need_for(exp, "s", lanes4()) == Need(gpus=0)
    # While lab hands out GPUs, a job given none sees none.
    assert gpus.job_env(lanes4(), ()) == {"CUDA_VISIBLE_DEVICES": "", "LAB_GPUS": ""}
    set_front_matter(lab_root, "e", "gpus_per_run: 2")
    with pytest.raises(BadInput, match="report.md: gpus: none, but gpus_per_run asks 2 for s"):
        gpus.need_for(Workspace(lab_root).experiment("e"), "s", lanes4())


def test_bad_report_keys_name_the_report(lab_root):
    write_settings(lab_root, "e", {"s.json": {}})
    set_front_matter(lab_root, "e", "gpus_per_runs: 2")
    exp = Workspace(lab_root).experiment("e")
    with pytest.raises(BadInput) as e:
        gpus.need_for(exp, "s", lanes4())
    assert str(e.value) == f"{exp.report_path}: unknown key 'gpus_per_runs' (did you mean 'gpus_per_run'?)"


def test_check_fits_refuses_what_can_never_run(lab_root):
    write_settings(lab_root, "e", {"s.json": {}})
    set_front_matter(lab_root, "e", "gpus_per_run: 2")
    setting = find_setting(Workspace(lab_root).experiment("e"), "s")
    assert gpus.check_fits(setting, lanes4()).gpus == 2
    with pytest.raises(BadInput) as e:
        gpus.check_fits(setting, gpus.Lanes(gpus=("0",), source="LAB_GPUS"))
    assert str(e.value) == "experiments/e/settings/s.json: cannot run here: it needs 2 GPUs and the runner has 1 (0)"
    with pytest.raises(BadInput, match=r"hands out none \(set gpus: auto or a list in lab.yaml, or LAB_GPUS\)$"):
        gpus.check_fits(setting, gpus.Lanes())


def test_job_env_names_the_gpus(lab_root):
    assert gpus.job_env(lanes4(), ("1", "3")) == {"CUDA_VISIBLE_DEVICES": "1,3", "LAB_GPUS": "1,3"}


# -- one round of the runner ----------------------------------------------------------------------------------


def rows(*pairs):
    return [{"id": i, "experiment": exp, "setting": s} for i, (exp, s) in enumerate(pairs, start=1)]


def test_plan_reads_each_report_once_and_places_jobs(lab_root):
    write_settings(lab_root, "big", {"b1.json": {}, "b2.json": {}})
    write_settings(lab_root, "small", {"s1.json": {}, "s2.json": {}})
    set_front_matter(lab_root, "big", "gpus_per_run: 2")
    ws = Workspace(lab_root)
    queued = rows(("big", "b1"), ("small", "s1"), ("big", "b2"), ("small", "s2"))
    p = gpus.plan(ws, lanes4(), [], queued)
    assert p.start == [(1, ("0", "1")), (2, ("2",))] and p.impossible == []
    assert p.needs[1] == Need(gpus=2) and p.needs[2] == Need(gpus=1)
    # b1 and s1 run: b2 waits for two GPUs and s2 must not take GPU 3 from it.
    running = [{"lane": gpus.lane_json(Need(gpus=2), ("0", "1"))}, {"lane": gpus.lane_json(Need(gpus=1), ("2",))}]
    assert gpus.plan(ws, lanes4(), running, queued[2:]).start == []


def test_plan_names_jobs_that_cannot_run(lab_root):
    write_settings(lab_root, "e", {"s.json": {}})
    write_settings(lab_root, "f", {"s.json": {}})
    set_front_matter(lab_root, "e", "gpus_per_run: 8")
    (lab_root / "experiments" / "f" / "report.md").write_text("---\ngpus: [0, 0]\n---\n")
    p = gpus.plan(Workspace(lab_root), lanes4(), [], rows(("e", "s"), ("f", "s"), ("gone", "s")))
    reasons = dict(p.impossible)
    assert reasons[1] == "it needs 8 GPUs and the runner has 4 (0,1,2,3)"
    assert reasons[2].endswith("report.md: gpus: GPU 0 is listed twice")
    assert p.start == [(3, ("0",))]  # an experiment whose report is gone runs with the defaults, as before


def test_what_a_running_job_holds_survives_in_its_row():
    need = Need(gpus=2, share=Fraction(1, 3), group="e", cap=2)
    held = gpus.held_from(gpus.lane_json(need, ("1", "3")))
    assert held.gpus == ("1", "3") and held.need.share == Fraction(1, 3) and held.need.cap == 2
    assert gpus.lane_of(gpus.lane_json(need, ("1",), {"LAB_GPUS": "1"}))["env"] == {"LAB_GPUS": "1"}
    for broken in (None, "", "garbage", "[1]", '{"gpus": 5}', '{"share": [1, 0]}'):
        assert gpus.held_from(broken).need.gpus == 0  # a job from before lanes holds one CPU lane


def test_gpus_per_run_for_the_slurm_executor(lab_root):
    write_settings(lab_root, "e", {"small.json": {}, "big.json": {}})
    write_settings(lab_root, "cpu", {"s.json": {}})
    set_front_matter(lab_root, "e", "gpus_per_run: {big: 4}")
    set_front_matter(lab_root, "cpu", "gpus: none")
    ws = Workspace(lab_root)
    assert gpus.gpus_per_run(ws.experiment("e"), "big") == 4
    assert gpus.gpus_per_run(ws.experiment("e"), "small") is None  # no pattern matches: slurm.gpus stands
    assert gpus.gpus_per_run(ws.experiment("cpu"), "s") == 0
    (lab_root / "lab.yaml").write_text("gpus_per_run: 1\n")
    assert gpus.gpus_per_run(Workspace(lab_root).experiment("e"), "small") == 1
