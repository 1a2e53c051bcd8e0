"""Notifications (lab.runs.notify): the `notify:` settings, the events, and delivery through apprise to a real
webhook receiver on 127.0.0.1 and through a real `on_event` command; a receiver that is down or hangs only logs."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from helpers import Receiver, wait_for
from lab.core.workspace import Workspace
from lab.errors import BadInput
from lab.runs import notify
from lab.runs.notify import NotifyConfig, Sender, Summary
from lab.core.settings import find_setting


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Log(list):
    def __call__(self, message: str) -> None:
        self.append(message)


FAILED = {"experiment": "exp3", "setting": "lr-high", "state": "failed", "attempt": 1, "exit_code": 3,
          "duration_s": 75.2, "metrics": {"loss": 0.7, "bad": "nan"}, "gpus": ["1"]}


# -- settings -------------------------------------------------------------------------------------------------


def test_config_forms(lab_root):
    where = "lab.yaml"
    assert notify.parse_config(None, where) is None
    assert notify.parse_config("ntfys://ntfy.sh/t", where).urls == ("ntfys://ntfy.sh/t",)
    c = notify.parse_config({"urls": ["json://h:1/x"], "on_event": "notify-send '{title}'", "events": ["failed"],
                             "timeout": 5}, where)
    assert c == NotifyConfig(urls=("json://h:1/x",), on_event=("notify-send", "{title}"),
                             events=frozenset({"failed"}), timeout=5.0)
    (lab_root / "lab.yaml").write_text("notify:\n  on_event: [python, hook.py]\n")
    assert notify.config_for(Workspace(lab_root)).on_event == ("python", "hook.py")
    assert notify.config_for(Workspace(lab_root)).events == frozenset(notify.EVENTS)


@pytest.mark.parametrize("value,message", [
    ({"url": "x"}, "unknown notify option 'url' (known: urls, on_event, events, timeout)"),
    ({"urls": ["json://h/", "slack"]}, "notify.urls: entry 2 is not a URL such as ntfys://ntfy.sh/TOPIC or json://host:port/path"),
    ({"urls": [3]}, "notify.urls must be a list of apprise URLs such as ntfys://ntfy.sh/TOPIC"),
    ({"on_event": []}, "notify.on_event must be a command as a list of arguments, such as [notify-send, '{title}']"),
    ({"on_event": "a 'b"}, "notify.on_event: No closing quotation"),
    ({"urls": ["json://h/x"], "events": ["done"]}, "notify.events: unknown event 'done' (known: failed, drained, interrupted)"),
    ({"urls": ["json://h/x"], "timeout": 0}, "notify.timeout must be a number of seconds between 0 and 600, not 0"),
    ({"events": ["failed"]}, "notify needs urls or on_event (or both)"),
    (7, "notify must be a mapping such as {urls: [ntfys://ntfy.sh/TOPIC]}, or a list of URLs"),
])
def test_bad_config_is_one_line_naming_lab_yaml(lab_root, value, message):
    import yaml

    (lab_root / "lab.yaml").write_text(yaml.safe_dump({"notify": value}))
    with pytest.raises(BadInput) as e:
        notify.config_for(Workspace(lab_root))
    assert str(e.value) == f"{lab_root / 'lab.yaml'}: {message}"


def test_a_bad_url_never_shows_its_secret():
    with pytest.raises(BadInput) as e:
        notify.parse_config(["hooks.slack.com/services/T000/B000/SECRETTOKEN"], "lab.yaml")
    assert "SECRETTOKEN" not in str(e.value)


# -- events ---------------------------------------------------------------------------------------------------


def test_failed_and_interrupted_events(tmp_path):
    e = notify.job_event("failed", FAILED, tmp_path / "mylab")
    assert e["title"] == "lab mylab: exp3/lr-high failed"
    assert e["message"] == "exp3/lr-high failed (exit 3) after 1 min 15 s; log: experiments/exp3/logs/lr-high.log"
    assert e["metrics"] == {"loss": 0.7} and e["gpus"] == ["1"] and e["event"] == "failed"
    json.dumps(e, allow_nan=False)
    rec = dict(FAILED, state="interrupted", exit_code=None, reason="the runner died while the job ran; it was stopped and queued again")
    e = notify.job_event("interrupted", rec, tmp_path / "mylab")
    assert e["message"] == "exp3/lr-high was interrupted: the runner died while the job ran; it was stopped and queued again"


def test_the_drained_summary_names_the_best_run(tmp_path):
    s = Summary()
    assert not s
    for name, acc in (("a", 0.8), ("b", 0.912), ("c", None)):
        s.add({"experiment": "exp3", "setting": name, "state": "succeeded",
               "metrics": {"eval_accuracy": acc, "eval_loss": 0.5} if acc else {"eval_loss": 0.1}})
    s.add({"experiment": "exp3", "setting": "d", "state": "failed", "metrics": {"eval_accuracy": 0.99}})
    s.add({"experiment": "exp3", "setting": "e", "state": "cancelled"})
    e = s.event(tmp_path / "mylab")
    assert e["message"] == "3 succeeded, 1 failed, 1 cancelled; best eval_accuracy 0.912 (exp3/b)"
    assert e["title"] == "lab mylab: queue done with failures"
    assert (e["succeeded"], e["failed"], e["best"]["setting"]) == (3, 1, "b")


def test_lower_is_better_and_no_metric_at_all(tmp_path):
    s = Summary()
    for name, loss in (("a", 0.4), ("b", 0.2)):
        s.add({"experiment": "x", "setting": name, "state": "succeeded", "metrics": {"loss": loss, "step": 9}})
    assert s.event(tmp_path).get("best") == {"experiment": "x", "setting": "b", "metric": "loss", "value": 0.2}
    s = Summary()
    s.add({"experiment": "x", "setting": "a", "state": "succeeded", "metrics": {"throughput": 3}})
    e = s.event(tmp_path / "l")
    assert e["message"] == "1 succeeded, 0 failed" and e["best"] is None and e["title"] == "lab l: queue done"


# -- delivery through apprise to a real webhook ---------------------------------------------------------------


def test_a_failed_job_and_a_drained_queue_each_deliver_one_message(receiver, tmp_path):
    log = Log()
    config = NotifyConfig(urls=(receiver.url,))
    notify.deliver(config, notify.job_event("failed", FAILED, tmp_path / "mylab"), log)
    s = Summary()
    s.add(FAILED)
    notify.deliver(config, s.event(tmp_path / "mylab"), log)
    assert [p for p, _ in receiver.posts] == ["/hook", "/hook"]
    first, second = (body for _, body in receiver.posts)
    assert first["title"] == "lab mylab: exp3/lr-high failed" and first["type"] == "failure"
    assert first["message"].startswith("exp3/lr-high failed (exit 3)")
    assert second["message"] == "0 succeeded, 1 failed" and second["title"] == "lab mylab: queue done with failures"
    assert log == []


def test_events_not_asked_for_are_not_sent(receiver, tmp_path):
    config = NotifyConfig(urls=(receiver.url,), events=frozenset({"drained"}))
    assert notify.deliver(config, notify.job_event("failed", FAILED, tmp_path), Log()) == []
    notify.deliver(config, Summary().event(tmp_path), Log())
    assert len(receiver.posts) == 1 and receiver.posts[0][1]["title"].endswith("queue done")


def test_a_receiver_that_is_down_only_logs(tmp_path):
    log = Log()
    port = closed_port()
    results = notify.deliver(NotifyConfig(urls=(f"json://127.0.0.1:{port}/hook?token=SECRET",)),
                             notify.job_event("failed", FAILED, tmp_path), log)
    assert [(t, ok) for t, ok, _ in results] == [(f"json://127.0.0.1:{port}/...", False)]
    assert len(log) == 1 and log[0].startswith(f"notify: failed to json://127.0.0.1:{port}/... failed: ")
    assert "SECRET" not in log[0]


def test_the_runner_s_sender_returns_while_a_receiver_hangs_and_logs_what_failed(lab_root):
    hanging = Receiver(hang=True)
    try:
        port = closed_port()
        (lab_root / "lab.yaml").write_text(f"notify: ['json://127.0.0.1:{port}/down', {hanging.url}]\n")
        log = Log()
        sender = Sender(Workspace(lab_root), log)
        sender.send(notify.job_event("failed", FAILED, lab_root))
        assert hanging.posts == [] and log == []  # send() returned; the receiver still holds the message
        runner_log = lab_root / ".lab" / "runner.log"
        wait_for(lambda: runner_log.exists() and "failed to json://127.0.0.1" in runner_log.read_text(), timeout=60,
                 what="the failure in the runner's log")
        hanging.release.set()
        wait_for(lambda: hanging.posts, timeout=60, what="the delivery")
        assert hanging.posts[0][1]["title"] == f"lab {lab_root.name}: exp3/lr-high failed"
        wait_for(lambda: all(p.poll() is not None for p in sender._procs), timeout=60, what="the sender to end")
    finally:
        hanging.stop()


def test_no_notify_config_sends_nothing(lab_root):
    sender = Sender(Workspace(lab_root), Log())
    sender.send(notify.job_event("failed", FAILED, lab_root))
    assert sender._procs == []
    assert notify.send_detached(Workspace(lab_root), Summary().event(lab_root)) is None


def test_a_bad_notify_config_in_the_runner_is_one_log_line(lab_root):
    (lab_root / "lab.yaml").write_text("notify: {urls: [x]}\n")
    log = Log()
    Sender(Workspace(lab_root), log).send(notify.probe_event(lab_root))
    assert log == [f"{lab_root / 'lab.yaml'}: notify.urls: entry 1 is not a URL such as ntfys://ntfy.sh/TOPIC or json://host:port/path; no notifications"]


def test_a_url_apprise_does_not_know_is_logged(tmp_path):
    log = Log()
    results = notify.deliver(NotifyConfig(urls=("nosuchservice://x/y",)), notify.probe_event(tmp_path), log)
    assert results == [("nosuchservice://x/...", False, "apprise does not understand this URL (see https://github.com/caronc/apprise/wiki)")]
    assert len(log) == 1


def test_apprise_is_imported_only_when_sending(tmp_path):
    import subprocess

    code = ("import sys; from lab.runs import notify; notify.parse_config(['json://x/'], 'lab.yaml');"
            " notify.Summary().event('/x'); print('apprise' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the on_event command -------------------------------------------------------------------------------------


def hook_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "hook.py"
    script.write_text("import json, os, sys, time\n" + body)
    return script


def test_on_event_gets_the_event_on_stdin_and_its_arguments_filled(tmp_path):
    out = tmp_path / "got.json"
    script = hook_script(tmp_path, f"json.dump({{'stdin': json.load(sys.stdin), 'argv': sys.argv[1:],"
                                   f" 'env': os.environ['LAB_EVENT'], 'cwd': os.getcwd()}}, open({str(out)!r}, 'w'))\n")
    config = NotifyConfig(on_event=(sys.executable, str(script), "{title}", "--", "{message}", "{event}!"))
    log = Log()
    event = notify.job_event("failed", FAILED, tmp_path / "mylab")
    results = notify.deliver(config, event, log, cwd=tmp_path)
    assert results == [(f"on_event {sys.executable}", True, "")] and log == []
    got = json.loads(out.read_text())
    assert got["stdin"] == event
    assert got["argv"] == ["lab mylab: exp3/lr-high failed", "--", event["message"], "failed!"]
    assert got["env"] == "failed" and got["cwd"] == str(tmp_path)


def test_on_event_failures_are_logged(tmp_path):
    log = Log()
    script = hook_script(tmp_path, "print('webhook said no'); sys.exit(4)\n")
    notify.deliver(NotifyConfig(on_event=(sys.executable, str(script))), notify.probe_event(tmp_path), log)
    assert log == [f"notify: test to on_event {sys.executable} failed: exit 4: webhook said no"]
    log.clear()
    notify.deliver(NotifyConfig(on_event=("/nonexistent/notifier",)), notify.probe_event(tmp_path), log)
    assert log == ["notify: test to on_event /nonexistent/notifier failed: cannot start /nonexistent/notifier: No such file or directory"]


def test_on_event_that_hangs_is_killed_with_its_children(tmp_path):
    from lab.core import process

    pidfile = tmp_path / "pids"
    script = hook_script(tmp_path, f"import subprocess\np = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                                   f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')\ntime.sleep(60)\n")
    log = Log()
    notify.deliver(NotifyConfig(on_event=(sys.executable, str(script)), timeout=1.5), notify.probe_event(tmp_path), log)
    assert log == [f"notify: test to on_event {sys.executable} failed: timed out after 1.5 s (killed)"]
    pids = [int(p) for p in pidfile.read_text().split()]
    wait_for(lambda: not any(process.pid_alive(p) for p in pids), timeout=10, what="the hook's processes to end")


# -- from a short-lived command -------------------------------------------------------------------------------


def test_send_detached_delivers_from_its_own_process(lab_root, receiver):
    (lab_root / "lab.yaml").write_text(f"notify: [{receiver.url}]\n")
    ws = Workspace(lab_root)
    notify.send_detached(ws, notify.job_event("interrupted", dict(FAILED, state="interrupted"), lab_root))
    wait_for(lambda: receiver.posts, timeout=60, what="the detached delivery")
    assert receiver.posts[0][1]["title"] == f"lab {lab_root.name}: exp3/lr-high interrupted"
    assert receiver.posts[0][1]["type"] == "warning"


def test_notify_summary_sends_the_best_run_and_the_table(lab_root, receiver):
    """`lab notify --summary EXP`: the experiment's best run, its key metrics and the runs table, as text."""
    from helpers import LabCLI
    from lab.runs import attempt as job

    (lab_root / "p.py").write_text("import json, os, sys\ns = json.load(open(sys.argv[1]))\n"
                                   "open(os.environ['LAB_METRICS'], 'a').write(json.dumps({'step': 1, 'eval_accuracy': s['lr'] * 10}) + '\\n')\n")
    exp = Workspace(lab_root).new_experiment("exp1")
    exp.report_path.write_text(exp.report_path.read_text().replace("command: \n", 'command: "{python} p.py {settings}"\n'))
    for name, lr in (("low", 0.01), ("high", 0.05)):
        (exp.settings_dir / f"{name}.json").write_text(json.dumps({"lr": lr}))
        assert job.run(find_setting(exp, name))["state"] == "succeeded"
    (lab_root / "lab.yaml").write_text(f"notify:\n  urls: ['{receiver.url}']\n  events: [failed]\n")
    LabCLI(lab_root)("notify", "--summary", "exp1", check=0)
    [(_, body)] = receiver.posts
    assert "best: high by eval_accuracy" in body["title"]
    assert "best: high (eval_accuracy 0.5)" in body["message"] and "low" in body["message"] and "lr" in body["message"]
