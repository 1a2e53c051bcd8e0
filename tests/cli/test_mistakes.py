"""Mistakes get answers: each names what is wrong, the nearest right name, what exists, and a command that works.

Real parts: the real `lab` command on a lab under tmp_path.
"""

from __future__ import annotations

import json

import pytest

from helpers import write_settings


@pytest.fixture
def exp1(lab, lab_root):
    write_settings(lab_root, "exp1", {"lr-high.json": {"lr": 0.1}, "lr-low.json": {"lr": 0.01}},
                   command="{python} -c pass {settings}")
    return lab


def test_init_inside_a_lab_refuses_and_names_the_lab(exp1, lab_root):
    proc = exp1("init", str(lab_root / "experiments" / "exp1"))
    assert proc.returncode == 2 and f"is inside the lab {lab_root}" in proc.stderr
    assert "lab --root" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (lab_root / "experiments" / "exp1" / "experiments").exists()
    assert exp1("init", str(lab_root)).returncode == 0  # the lab itself: nothing changes, as before


def test_a_misspelled_report_key_is_named_with_did_you_mean(exp1, lab_root):
    report = lab_root / "experiments" / "exp1" / "report.md"
    report.write_text(report.read_text().replace("command:", "comand:", 1))
    proc = exp1("run", "exp1")
    assert proc.returncode == 2 and "unknown key 'comand' (did you mean 'command'?)" in proc.stderr
    assert not (lab_root / "experiments" / "exp1" / "runs").exists()
    assert exp1("list").returncode == 2


def test_a_misspelled_lab_yaml_key_is_named_with_did_you_mean(exp1, lab_root):
    (lab_root / "lab.yaml").write_text("excutor: local\n")
    proc = exp1("run", "exp1")
    assert proc.returncode == 2 and "lab.yaml: unknown key 'excutor' (did you mean 'executor'?)" in proc.stderr


def test_own_report_keys_that_are_no_near_miss_are_left_alone(exp1, lab_root):
    report = lab_root / "experiments" / "exp1" / "report.md"
    report.write_text(report.read_text().replace("tags: []", "tags: []\nreviewer: ana", 1))
    assert exp1("list").returncode == 0


def test_unknown_command_gets_did_you_mean_and_the_list(lab):
    proc = lab("stauts")
    assert proc.returncode == 2 and "did you mean 'status'?" in proc.stderr and "reproduce" in proc.stderr


def test_unknown_setting_and_experiment_get_did_you_mean_and_what_exists(exp1):
    proc = exp1("run", "exp1/lr-hihg")
    assert proc.returncode == 2 and "did you mean 'lr-high'?" in proc.stderr and "lr-high, lr-low" in proc.stderr
    proc = exp1("run", "exp2")
    assert proc.returncode == 2 and "did you mean 'exp1'?" in proc.stderr


def test_list_exits_2_on_a_broken_setting_and_names_it(exp1, lab_root):
    (lab_root / "experiments" / "exp1" / "settings" / "bad.json").write_text('{"lr": ')
    proc = exp1("list", "--json")
    assert proc.returncode == 2 and "settings/bad.json" in proc.stderr
    assert "settings/bad.json" in json.loads(proc.stdout)[0]["error"]


def test_new_from_another_names_the_run_not_adding_settings(exp1):
    proc = exp1("new", "exp3", "--from", "exp1")
    assert proc.returncode == 0 and "add settings" not in proc.stderr and "lab run exp3" in proc.stderr


def test_note_offline_names_the_cause_of_the_failed_connection(lab):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = lab("note", "2301.12345", env={"LAB_ARXIV_API_URL": f"http://127.0.0.1:{port}/api/query",
                                          "LAB_ARXIV_RETRIES": "0"})
    assert proc.returncode == 1 and "Connection refused" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_status_of_a_setting_that_does_not_exist_exits_2(exp1):
    proc = exp1("status", "exp1/nope")
    assert proc.returncode == 2 and "no setting 'nope'" in proc.stderr and "lr-high, lr-low" in proc.stderr
    proc = exp1("status", "exp1/lr-hihg")
    assert proc.returncode == 2 and "did you mean 'lr-high'?" in proc.stderr
    proc = exp1("status", "exp9")
    assert proc.returncode == 2 and "did you mean 'exp1'?" in proc.stderr
    assert exp1("status", "exp1/lr-low").returncode == 0  # exists, never ran
