"""Quiet, truthful output: one line for skips, a failure said once, the terminal left as it was found.

Real parts: the real `lab` command and runner, a real pseudo-terminal for `--wait`.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from helpers import kill_lab_processes, wait_for, write, write_settings


def test_a_sweep_of_skips_is_one_line(lab, lab_root):
    write_settings(lab_root, "e", {f"s{i}.json": {"i": i} for i in range(5)}, command="{python} -c pass {settings}")
    try:
        lab("run", "e", "--wait", check=0)
        proc = lab("run", "e", check=0)
        assert proc.stderr.strip() == "skipped 5 settings that already succeeded; --rerun runs them"
    finally:
        kill_lab_processes(lab_root)


def test_a_failure_is_said_once_on_one_line(lab, lab_root):
    (lab_root / "fail.py").write_text("import sys\nprint('ValueError: ' + 'x' * 150)\nsys.exit(3)\n")
    write_settings(lab_root, "e", {"s.json": {}}, command="{python} fail.py {settings}")
    try:
        proc = lab("run", "e", "--wait")
        assert proc.returncode == 1
        lines = [line for line in proc.stderr.splitlines() if "failed" in line]
        assert lines == ["failed e/s: exit code 3: ValueError: " + "x" * 150]
    finally:
        kill_lab_processes(lab_root)


def test_wait_ended_by_sigterm_shows_the_cursor_again(lab_root):
    write_settings(lab_root, "e", {"s.json": {}}, command='{python} -c "import time; time.sleep(60)" {settings}')
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "lab", "--root", str(lab_root), "run", "e", "--wait"],
                            stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "TERM": "xterm"})
    os.close(follower)
    seen = b""
    try:
        wait_for(lambda: (lab_root / "experiments/e/runs/s.json").exists(), what="the job queued")
        deadline = time.monotonic() + 30
        while b"\x1b[?25l" not in seen and time.monotonic() < deadline:  # the live display hid the cursor
            if select.select([leader], [], [], 0.2)[0]:
                seen += os.read(leader, 65536)
        assert b"\x1b[?25l" in seen
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        while select.select([leader], [], [], 0.2)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert seen.rfind(b"\x1b[?25h") > seen.rfind(b"\x1b[?25l")  # shown again after it was hidden
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        kill_lab_processes(lab_root)


def _on_a_terminal(argv: list[str]) -> bytes:
    """What `argv` writes to a real pseudo-terminal (stdout and stderr both), until it exits."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "TERM": "xterm"})
    os.close(follower)
    seen = b""
    try:
        while True:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process ended
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(60)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return seen


def test_a_search_that_must_index_many_files_shows_its_progress_on_a_terminal_only(lab, lab_root):
    for i in range(250):  # written a while ago, as the index trusts (see helpers.write)
        write(lab_root / "papers" / f"n{i:03d}.md", f"---\ntitle: Note {i}\n---\n\nwarmup pangolin {i}\n")
    argv = [sys.executable, "-m", "lab", "--root", str(lab_root), "search", "pangolin", "--mode", "keyword"]
    seen = _on_a_terminal(argv).decode()
    assert "indexing: 0/250 files" in seen and "indexing: 250/250 files" in seen and "Note" in seen
    write(lab_root / "papers" / "n000.md", "---\ntitle: Note 0\n---\n\nwarmup pangolin again\n")
    assert "indexing" not in _on_a_terminal(argv).decode()  # one file: no progress to show
    index_db = lab_root / ".lab" / "index.db"
    index_db.unlink()
    proc = lab("search", "pangolin", "--mode", "keyword", check=0)  # not a terminal: the output alone
    assert "indexing" not in proc.stderr and "Note" in proc.stdout


def test_logs_takes_an_attempt_and_a_tail(lab, lab_root):
    (lab_root / "p.py").write_text("import os\nfor i in range(5):\n    print(os.environ['LAB_SETTING'], i)\n")
    write_settings(lab_root, "e", {"s.json": {}}, command="{python} p.py {settings}")
    try:
        lab("run", "e", "--wait", check=0)
        lab("run", "e", "--rerun", "--wait", check=0)
        whole = lab("logs", "e/s", check=0).stdout
        assert whole.count("===== lab: attempt") == 2
        first = lab("logs", "e/s@1", check=0).stdout
        assert first.startswith("===== lab: attempt 1 of e/s") and "attempt 2" not in first and first.count("s 4") == 1
        assert lab("logs", "e/s@2", "--tail", "2", check=0).stdout == "s 3\ns 4\n"
        proc = lab("logs", "e/s@7")
        assert proc.returncode == 2 and "no attempt 7 (attempts in it: @1, @2)" in proc.stderr
    finally:
        kill_lab_processes(lab_root)


def test_logs_of_a_setting_that_does_not_exist_names_those_that_do(lab, lab_root):
    write_settings(lab_root, "exp2", {"lr-high.json": {}}, command="{python} -c pass {settings}")
    proc = lab("logs", "exp2/lrhigh")
    assert proc.returncode == 2 and "did you mean 'lr-high'?" in proc.stderr and "lab run exp2/lrhigh" not in proc.stderr
    proc = lab("logs", "exp2/lr-high")
    assert proc.returncode == 2 and "run it with: lab run exp2/lr-high" in proc.stderr
