"""Metrics of unchanged programs: real Trainer, Lightning, SummaryWriter and printing scripts run through
`lab run --wait`; what their libraries write is what lab captures (live, at the end, and by `lab recapture`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from helpers import LabCLI, kill_lab_processes, wait_for, write_settings

PROGRAMS = Path(__file__).resolve().parent / "programs"


def program(root: Path, name: str) -> None:
    """Put test program `name` (tests/runs/programs/) into the lab root, where its command runs it."""
    shutil.copy(PROGRAMS / name, root / name)


def trainer_settings(output_dir: str, **extra) -> dict:
    """The Trainer's settings, passed to programs/trainer.py as flags ({flags})."""
    return {
        "output_dir": output_dir, "report_to": "none", "max_steps": 8, "per_device_train_batch_size": 8,
        "logging_steps": 2, "learning_rate": 0.01, "save_strategy": "no", "seed": 3, "use_cpu": True,
        "disable_tqdm": True, "layers": [1], **extra,
    }

pytest.importorskip("torch")


def set_command(root: Path, exp: str, command: str, extra_front_matter: str = "") -> Path:
    exp_dir = write_settings(root, exp, {}, command=command)
    if extra_front_matter:
        report = exp_dir / "report.md"
        text = report.read_text()
        report.write_text(text.replace("\ncommand:", "\n" + extra_front_matter + "command:", 1))
    return exp_dir


def record(root: Path, exp: str, name: str) -> dict:
    return json.loads((root / "experiments" / exp / "runs" / f"{name}.json").read_text())


def status(cli: LabCLI) -> dict:
    return {(r["experiment"], r["setting"]): r for r in cli.json("status")}


def no_traceback(root: Path) -> None:
    log = root / ".lab" / "runner.log"
    text = log.read_text() if log.exists() else ""
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory):
    from lab.core.workspace import init

    root = tmp_path_factory.mktemp("capture") / "lab"
    init(root)
    yield root
    kill_lab_processes(root)


# -- the transformers Trainer, three ways: printed dicts, the default progress bar, and watched while it runs ----


@pytest.fixture(scope="module")
def trainer_lab(module_lab):
    pytest.importorskip("transformers")
    root = module_lab
    program(root, "trainer.py")
    exp_dir = set_command(root, "hf", "{python} trainer.py {flags}")
    settings = {
        "a-live.json": trainer_settings("experiments/hf/models/a-live", gate=str(root / "gate"), disable_tqdm=False),
        "b-bar.json": trainer_settings("experiments/hf/models/b-bar", disable_tqdm=False),
        "c-plain.json": trainer_settings("experiments/hf/models/c-plain"),
    }
    for name, value in settings.items():
        (exp_dir / "settings" / name).write_text(json.dumps(value))
    cli = LabCLI(root)
    cli("run", "hf", check=0)
    # The first job (the Trainer's default progress bar) waits on its gate after logging its first loss: lab status
    # shows that loss while it runs.
    live = wait_for(lambda: (status(cli).get(("hf", "a-live")) or {}).get("progress", {}).get("loss") and
                    status(cli)[("hf", "a-live")], timeout=300, what="a running Trainer's loss in lab status", poll=0.5)
    (root / "gate").write_text("go")
    wait_for(lambda: all(status(cli).get(("hf", n), {}).get("state") in ("succeeded", "failed")
                         for n in ("a-live", "b-bar", "c-plain")), timeout=600, what="the Trainer runs", poll=1)
    return root, cli, live


def test_status_shows_a_running_trainer_scripts_latest_loss(trainer_lab):
    root, cli, live = trainer_lab
    assert live["state"] == "running"
    assert isinstance(live["progress"]["loss"], float) and live["progress"]["step"] >= 1


def test_trainer_script_gets_flags_and_its_metrics_come_from_its_files(trainer_lab):
    root, cli, _ = trainer_lab
    for name in ("a-live", "b-bar", "c-plain"):
        rec = record(root, "hf", name)
        assert rec["state"] == "succeeded", (root / "experiments" / "hf" / "logs" / f"{name}.log").read_text()[-3000:]
        state = json.loads((root / "experiments" / "hf" / "models" / name / "trainer_state.json").read_text())
        results = json.loads((root / "experiments" / "hf" / "models" / name / "all_results.json").read_text())
        losses = [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]
        assert [s for s, _ in losses] == [2, 4, 6, 8]
        # Real steps from trainer_state.json, final evaluation from all_results.json.
        assert rec["metrics"]["loss"] == losses[-1][1]
        assert rec["metrics"]["eval_loss"] == results["eval_loss"]
        assert rec["metrics_sources"]["loss"] == "trainer_state" and rec["metrics_sources"]["eval_loss"] == "results"
        rows = [json.loads(line) for line in (root / "experiments" / "hf" / rec["metrics_path"]).read_text().splitlines()]
        assert [(r["step"], r["loss"]) for r in rows if "loss" in r] == losses
    rec = record(root, "hf", "c-plain")
    assert "--layers" in rec["argv"] and "--disable_tqdm=true" in rec["argv"] and "--max_steps=8" in rec["argv"]
    assert "--disable_tqdm=false" in record(root, "hf", "b-bar")["argv"]
    by_run = status(cli)
    assert by_run[("hf", "c-plain")]["metrics"]["eval_loss"] == rec["metrics"]["eval_loss"]
    no_traceback(root)


def test_trainer_output_alone_gives_the_same_losses(trainer_lab):
    """The dicts the Trainer prints (after its progress bar's \\r, numbers quoted in transformers 5) and its
    `***** eval metrics *****` block, read from the real logs."""
    root, cli, _ = trainer_lab
    for name in ("b-bar", "c-plain"):
        state = json.loads((root / "experiments" / "hf" / "models" / name / "trainer_state.json").read_text())
        losses = [round(e["loss"], 4) for e in state["log_history"] if "loss" in e]
        got = json.loads(cli("capture", f"experiments/hf/logs/{name}.log", "--json", check=0).stdout)
        assert [round(r["loss"], 4) for r in got["rows"] if "loss" in r] == losses
        assert got["sources"]["loss"] == "output"
        assert abs(got["final"]["eval_loss"] - record(root, "hf", name)["metrics"]["eval_loss"]) < 1e-4


def test_compare_book_rows_and_recapture_agree(trainer_lab):
    from lab.book.table import load_runs
    from lab.core.workspace import Workspace

    root, cli, _ = trainer_lab
    compared = cli("compare", "hf", check=0)
    assert "* best:" in compared.stderr
    runs = {r.setting: r for r in load_runs(Workspace(root).experiment("hf"))}
    assert [r["step"] for r in runs["c-plain"].rows() if "loss" in r] == [2, 4, 6, 8]  # the book's curves
    before = {n: record(root, "hf", n)["metrics"] for n in ("a-live", "b-bar", "c-plain")}
    for name in ("b-bar", "c-plain"):
        (root / "experiments" / "hf" / "logs" / f"{name}.captured.jsonl").unlink()
    done = json.loads(cli("recapture", "hf", "--json", check=0).stdout)
    assert {d["run"] for d in done} == {"hf/a-live", "hf/b-bar", "hf/c-plain"}
    assert {n: record(root, "hf", n)["metrics"] for n in before} == before


def test_half_written_trainer_state_falls_back_to_a_whole_checkpoint(trainer_lab, tmp_path):
    from lab.runs.capture.files import Files

    root, _, _ = trainer_lab
    real = (root / "experiments" / "hf" / "models" / "c-plain" / "trainer_state.json").read_text()
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text(real)
    (tmp_path / "trainer_state.json").write_text(real[: len(real) // 2])
    files = Files([tmp_path])
    files.poll()
    assert [s for s, _ in files.trainer_state["loss"]] == [2, 4, 6, 8]
    assert len(files.notes) == 1 and "not a whole trainer state" in files.notes[0]


# -- Lightning, SummaryWriter, a printing script --------------------------------------------------------------


def test_lightning_default_logger_and_csv_logger(module_lab):
    pytest.importorskip("lightning")
    root = module_lab
    program(root, "lightning_module.py")
    exp_dir = set_command(root, "lt", "{python} lightning_module.py {settings}")
    (exp_dir / "settings" / "default.json").write_text("{}")
    (exp_dir / "settings" / "csv.json").write_text('{"csv": true}')
    cli = LabCLI(root)
    cli("run", "lt", "--wait", check=0, timeout=600)
    for name in ("default", "csv"):
        rec = record(root, "lt", name)
        assert rec["state"] == "succeeded"
        assert {"train_loss", "val_loss", "late_metric"} <= set(rec["metrics"])
        assert rec["hparams"] == {"lr": 0.05}
        rows = [json.loads(line) for line in (exp_dir / rec["metrics_path"]).read_text().splitlines()]
        assert len([r for r in rows if "val_loss" in r]) == 3  # one a validation epoch, at its real step
    assert set(record(root, "lt", "csv")["metrics_sources"].values()) == {"csv"}
    assert "tfevents" in set(record(root, "lt", "default")["metrics_sources"].values())
    a, b = record(root, "lt", "default")["metrics"], record(root, "lt", "csv")["metrics"]
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-6  # the same numbers through either logger
    assert "* best:" in cli("compare", "lt", check=0).stderr
    no_traceback(root)


def test_summary_writer_loop_and_printing_script(module_lab):
    root = module_lab
    program(root, "summary_writer.py")
    program(root, "prints.py")
    set_command(root, "sw", "{python} summary_writer.py {settings}")
    pr = set_command(root, "pr", "{python} prints.py {settings}")
    (root / "experiments" / "sw" / "settings" / "a.json").write_text('{"steps": 20}')
    (pr / "settings" / "a.json").write_text('{"steps": 5}')
    cli = LabCLI(root)
    cli("run", "sw", "pr", "--wait", check=0, timeout=600)
    sw = record(root, "sw", "a")
    assert sw["metrics"] == {"train/loss": 0.05, "val/accuracy": 0.19}
    assert set(sw["metrics_sources"].values()) == {"tfevents"}
    assert record(root, "pr", "a")["metrics"] == {"loss": 0.2, "accuracy": 0.5}
    assert record(root, "pr", "a")["metrics_sources"] == {"loss": "output", "accuracy": "output"}
    shown = {(r["experiment"], r["setting"]): r for r in cli.json("status", "--json")}
    assert shown["pr", "a"]["metrics_sources"] == {"loss": "output", "accuracy": "output"}
    rows = (pr / "logs" / "a.captured.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3, 4, 5]


def test_capture_can_be_turned_off_and_patterns_added(module_lab):
    root = module_lab
    program(root, "prints.py")
    off = set_command(root, "off", "{python} prints.py {settings}", "capture: false\n")
    mine = set_command(root, "mine", "{python} prints.py {settings}",
                       "capture:\n  output: false\n  patterns: ['accuracy=(?P<acc>[0-9.]+)']\n")
    (off / "settings" / "a.json").write_text("{}")
    (mine / "settings" / "a.json").write_text("{}")
    LabCLI(root)("run", "off", "mine", "--wait", check=0, timeout=600)
    assert record(root, "off", "a")["metrics"] == {}
    assert record(root, "mine", "a")["metrics"] == {"acc": 0.5}


# -- bad input: the run and its log are kept, other metrics intact ------------------------------------------------


def test_bad_output_leaves_the_other_metrics_intact(module_lab):
    root = module_lab
    program(root, "prints.py")
    bad = set_command(root, "bad", "{python} prints.py {settings}",
                      "capture:\n  patterns: ['^(?P<slow>(a+)+)$']\n")
    long_name = "n" * 500
    after = (b"{'a': tensor(0.5), 'nested': {'b': 1}, 'with space': 2, 'text': 'x'}\n"
             + f"train/loss=0.9 {long_name}=3\n".encode() + b"a" * 40 + b"b\n" + b"\xff\xfe\x00 binary\n")
    (bad / "settings" / "a.json").write_text(json.dumps({"before": (b"\x80\x81garbage\x00\n").hex(), "after": after.hex(),
                                                         "names": 1_000_000}))
    (bad / "settings" / "long.json").write_text(json.dumps({"before": "78" * 1000, "steps": 3}))
    cli = LabCLI(root)
    started = time.monotonic()
    cli("run", "bad", "--wait", check=0, timeout=600)
    rec = record(root, "bad", "a")
    assert rec["state"] == "succeeded"
    m = rec["metrics"]
    assert m["loss"] == 0.2 and m["accuracy"] == 0.5 and m["a"] == 0.5 and m["with space"] == 2
    assert m["train/loss"] == 0.9 and "b" not in m and "text" not in m and long_name not in m
    assert len(m) <= 1000  # a million names: capped
    notes = rec["capture_notes"]
    assert any("more than 1000 metric names" in n for n in notes)
    assert any("stopped" in n and "(a+)+" in n for n in notes)
    assert sum("more than 1000 metric names" in n for n in notes) == 1  # said once
    log = (bad / "logs" / "a.log").read_bytes()
    assert b"\xff\xfe\x00 binary\n" in log and log.count(b"\nm") >= 1_000_000  # the log is what the program wrote
    assert time.monotonic() - started < 300
    no_traceback(root)


def test_a_line_of_fifty_megabytes_is_skipped(module_lab, tmp_path):
    from lab.runs.capture.output import OutputScraper

    scraper = OutputScraper()
    scraper.feed(b"loss=1.0\n")
    chunk = b"x" * (1 << 20)
    for _ in range(50):  # 50 MB without a newline, as a program would write it
        scraper.feed(chunk)
    scraper.feed(b"y\nloss=0.5\n")
    scraper.feed(b"z" * (2 << 20))  # and one that never ends
    scraper.end()
    assert scraper.series.points["loss"] == [(1, 1.0), (2, 0.5)]
    assert scraper.notes == ["a line over 1 MB was skipped"]


def test_csv_whose_header_changes(module_lab):
    root = module_lab
    (root / "csvprog.py").write_text(
        "import csv, os\n"
        "w = csv.writer(open(os.path.join(os.environ['LAB_OUTPUT_DIR'], 'metrics.csv'), 'w', newline=''))\n"
        "w.writerow(['step', 'loss']); w.writerow([1, 0.9]); w.writerow([2, 0.8])\n"
        "w.writerow(['step', 'loss', 'acc']); w.writerow([3, 0.7, 0.5]); w.writerow([4, '', 0.6])\n")
    exp_dir = set_command(root, "csvh", "{python} csvprog.py")
    (exp_dir / "settings" / "a.json").write_text("{}")
    LabCLI(root)("run", "csvh", "--wait", check=0, timeout=600)
    rec = record(root, "csvh", "a")
    assert rec["metrics"] == {"loss": 0.7, "acc": 0.6}
    assert rec["metrics_sources"] == {"loss": "csv", "acc": "csv"}


@pytest.mark.parametrize("steps", [20, 3000])  # records read one by one; a read big enough for NumPy
def test_event_file_cut_mid_record_or_with_a_bad_checksum(tmp_path, steps):
    import os
    import struct
    import subprocess
    import sys

    from lab.runs.capture.tfevents import EventReader, read_scalars

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "s.json").write_text(json.dumps({"steps": steps}))
    subprocess.run([sys.executable, str(PROGRAMS / "summary_writer.py"), str(tmp_path / "s.json")], check=True,
                   env={**os.environ, "TENSORBOARD_LOGGING_DIR": str(tmp_path / "tb")}, capture_output=True)
    real = next((tmp_path / "tb").glob("*tfevents*"))
    whole = read_scalars(real)
    assert len(whole) == steps + steps // 5
    # The same scalars as tensorboard's own reader, float32 values as the program logged them (0.01, not
    # 0.009999999776), the new-style tensor scalars in their places.
    acc = EventAccumulator(str(real), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(s, v) for t, s, v in whole if t == "train/loss"] == [
        (e.step, float(f"{e.value:.7g}")) for e in acc.Scalars("train/loss")]
    assert [(t, s, v) for t, s, v in whole if t == "val/accuracy"] == [
        ("val/accuracy", s, s / 100) for s in range(steps) if s % 5 == 4]
    data = real.read_bytes()
    cut = tmp_path / "cut.tfevents"
    cut.write_bytes(data[:-7])  # the last record is still being written
    reader = EventReader(cut)
    assert reader.read() == whole[:-1]
    with open(cut, "ab") as f:
        f.write(data[-7:])  # ... and now it is whole
    assert reader.read() == whole[-1:]
    flipped = bytearray(data)
    at = data.index(b"train/loss") + 12  # inside the first scalar record's value
    flipped[at] ^= 0xFF
    bad = tmp_path / "bad.tfevents"
    bad.write_bytes(bytes(flipped))
    reader = EventReader(bad)
    got = reader.read()
    assert got == whole[1:] and len(reader.notes) == 1 and "bad checksum" in reader.notes[0]
    # A damaged length in the middle: the records after it cannot be found, and are skipped.
    at = 0
    for _ in range(steps // 2):  # TFRecord framing: length (8 bytes), its CRC (4), data, the data's CRC (4)
        at += 16 + struct.unpack_from("<Q", data, at)[0]
    flipped = bytearray(data)
    flipped[at + 6] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    reader = EventReader(bad)
    got = reader.read()
    assert 0 < len(got) < len(whole) and got == whole[:len(got)]
    assert len(reader.notes) == 1 and "length with a bad checksum" in reader.notes[0]
    assert reader.offset == len(data) and reader.read() == []


def test_catastrophic_pattern_is_stopped_without_slowing_the_rest():
    from lab.runs.capture.output import OutputScraper
    from lab.runs.capture.patterns import Patterns

    scraper = OutputScraper(Patterns([r"^(?P<slow>(a+)+)$", r"acc (?P<acc>[\d.]+)"]))
    started = time.monotonic()
    scraper.feed(b"a" * 50 + b"b\nacc 0.5\nloss=1\n")
    scraper.end()
    assert time.monotonic() - started < 5
    assert scraper.series.points["acc"] == [(1, 0.5)] and scraper.series.points["loss"] == [(1, 1)]
    assert len(scraper.notes) == 1 and "stopped" in scraper.notes[0]


# -- flags and settings placeholders ------------------------------------------------------------------------------


def test_flags_as_argparse_and_hfargumentparser_read_them():
    import argparse

    from lab.core.command import flags

    argv = flags({"lr": 0.1, "fp16": False, "bf16": True, "layers": [1, 2], "optim": {"name": "adam", "beta": 0.9},
                  "skip": None, "name": "a b"})
    assert argv == ["--lr=0.1", "--fp16=false", "--bf16=true", "--layers", "1", "2", "--optim.name=adam",
                    "--optim.beta=0.9", "--name=a b"]
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--fp16", type=lambda s: s == "true")
    parser.add_argument("--bf16", type=lambda s: s == "true")
    parser.add_argument("--layers", type=int, nargs="+")
    parser.add_argument("--optim.name")
    parser.add_argument("--optim.beta", type=float)
    parser.add_argument("--name")
    ns = vars(parser.parse_args(argv))
    assert ns == {"lr": 0.1, "fp16": False, "bf16": True, "layers": [1, 2], "optim.name": "adam", "optim.beta": 0.9,
                  "name": "a b"}


@pytest.mark.parametrize("settings, message", [
    ({"layers": []}, "layers: an empty list cannot be passed as flags"),
    ({"pairs": [[1, 2]]}, "pairs: a list inside a list cannot be passed"),
    ({"opts": ["-x"]}, "opts: list item '-x' starts with '-'"),
    ({"bad key": 1}, "key 'bad key' cannot be a command-line flag"),
])
def test_unpassable_setting_is_refused_naming_the_key(lab, lab_root, settings, message):
    program(lab_root, "prints.py")
    write_settings(lab_root, "fl", {"a.json": settings}, command="{python} prints.py {flags}")
    proc = lab("run", "fl", check=2)
    assert message in proc.stderr and "experiments/fl/settings/a.json" in proc.stderr
    assert not (lab_root / ".lab" / "queue.db").exists()


@pytest.mark.parametrize("front_matter, message", [
    ("capture:\n  patterns: ['(unclosed']\n", "capture pattern '(unclosed': missing ), unterminated subpattern"),
    ("capture:\n  patterns: ['loss ([0-9.]+)']\n", "has no named group for a value"),
    ("capture:\n  colour: red\n", "capture: unknown key 'colour'"),
    ("capture: 3\n", "'capture' must be true, false or a mapping"),
])
def test_bad_capture_configuration_queues_nothing(lab, lab_root, front_matter, message):
    program(lab_root, "prints.py")
    set_command(lab_root, "badcap", "{python} prints.py {settings}", front_matter)
    (lab_root / "experiments" / "badcap" / "settings" / "a.json").write_text("{}")
    proc = lab("run", "badcap", check=2)
    assert message in proc.stderr and "experiments/badcap/report.md" in proc.stderr
    assert not (lab_root / ".lab" / "queue.db").exists()


def test_one_setting_value_as_a_word(lab, lab_root):
    (lab_root / "echo.py").write_text("import sys\nprint('args', sys.argv[1:])\n")
    write_settings(lab_root, "one", {"a.json": {"optim": {"lr": 0.5}, "tag": "x y", "on": True}},
                   command="{python} echo.py --lr {settings.optim.lr} --tag={settings.tag} {settings.on}")
    lab("run", "one", "--wait", check=0, timeout=300)
    assert "args ['--lr', '0.5', '--tag=x y', 'true']" in (lab_root / "experiments/one/logs/a.log").read_text()
    write_settings(lab_root, "miss", {"a.json": {}}, command="{python} echo.py {settings.nope}")
    assert "no key 'nope' for {settings.nope}" in lab("run", "miss", check=2).stderr
    kill_lab_processes(lab_root)


def test_recapture_of_a_run_made_before_capture(module_lab):
    """A run whose capture files are gone (as before this feature): `lab recapture` derives them from its log."""
    root = module_lab
    program(root, "prints.py")
    exp_dir = set_command(root, "old", "{python} prints.py {settings}")
    (exp_dir / "settings" / "a.json").write_text('{"steps": 3}')
    cli = LabCLI(root)
    cli("run", "old", "--wait", check=0, timeout=300)
    cli("run", "old", "--wait", "--rerun", check=0, timeout=300)  # two attempts in one log
    rec = record(root, "old", "a")
    for p in (exp_dir / "logs").glob("a.captur*"):
        p.unlink()
    rec.update(metrics={}, metrics_path="logs/a.metrics.jsonl")
    rec.pop("metrics_sources")
    (exp_dir / "runs" / "a.json").write_text(json.dumps(rec))
    cli("recapture", "old/a", check=0)
    again = record(root, "old", "a")
    assert again["metrics"] == {"loss": 0.3333, "accuracy": 0.3}
    rows = (exp_dir / "logs" / "a.captured.jsonl").read_text().splitlines()
    assert len(rows) == 3  # the latest attempt's part of the log only
    shutil.rmtree(exp_dir / "logs")  # a run whose log is gone keeps what it had
    assert "its log is gone" in cli("recapture", "old", check=0).stderr
    assert record(root, "old", "a")["metrics"] == again["metrics"]


def test_many_dict_lines_read_together_keep_each_lines_values_and_types():
    """Hundreds of Trainer dict lines (read many at a time) give what each line gives: counted steps, ints kept,
    quoted numbers, a `tensor(...)`, and the pair and block lines between them in order."""
    from lab.runs.capture.output import scrape

    lines = [f"\r 10%|#  | {i}/600 [00:01<00:02]\n{{'loss': {1 / (i + 1)!r}, 'epoch': {i / 100!r}}}" for i in range(600)]
    lines += ["{'loss': '0.25', 'epoch': 6}", "{'loss': tensor(0.5, device='cuda:0')}", "loss=0.75 step 900",
              "***** eval metrics *****", "  eval_loss = 0.125", "{'loss': 1e-05, 'epoch': 6.5}"]
    got = scrape(("\n".join(lines) + "\n").encode()).series.points
    assert got["loss"] == [*((i + 1, 1 / (i + 1)) for i in range(600)), (601, 0.25), (602, 0.5), (900, 0.75), (603, 1e-05)]
    assert got["epoch"][:600] == [(i + 1, i / 100) for i in range(600)]
    assert got["epoch"][600:] == [(601, 6), (602, 6.5)] and type(got["epoch"][600][1]) is int
    assert got["eval_loss"] == [(1, 0.125)]


def test_the_header_of_an_attempt_is_found_in_its_log(tmp_path):
    from lab.runs.recapture import attempt_span

    log = tmp_path / "a.log"
    head = "===== lab: attempt {} of e/a at 2026-12-07T00:00:00+00:00: python p.py\n"
    one = "x=1\nloss=0.5\n"
    log.write_text(head.format(1) + one + head.format(2) + "y = 2\n" + "z=3\n" * 2000)
    first = len(head.format(1))
    second = first + len(one) + len(head.format(2))
    assert attempt_span(log, 1, "e/a") == (first, first + len(one))
    assert attempt_span(log, 2, "e/a") == (second, None)
    assert attempt_span(log, 3, "e/a") is None
    short = tmp_path / "short.log"  # walked back from its end, line by line
    short.write_text(head.format(1) + one + head.format(2) + "y = 2\n")
    assert attempt_span(short, 1, "e/a") == (first, first + len(one))
    assert attempt_span(short, 2, "e/a") == (second, None)
    log.write_text(log.read_text() + "echo " + head.format(2))  # the latest mark is not at a line's start
    assert attempt_span(log, 2, "e/a") is None


def test_a_printed_training_arguments_object_is_not_taken_for_metrics(tmp_path):
    """The transformers example scripts log their whole TrainingArguments (`adam_beta1=0.9,` one field a line)
    before training: those are settings; the Trainer's log lines after them are the metrics."""
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from lab.runs.capture.output import scrape

    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", learning_rate=1e-3, max_steps=20)
    log = f"Training/evaluation parameters {args}\n{{'loss': 0.52, 'learning_rate': 0.001, 'epoch': 0.4}}\n"
    assert "adam_beta1=0.9," in log  # the real repr, as the scripts print it
    assert set(scrape(log.encode()).series.points) == {"loss", "learning_rate", "epoch"}
