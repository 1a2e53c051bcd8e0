"""The job files in `.lab/jobs/`: what recovery removes and what it must leave to a writer still at work."""

from __future__ import annotations

from lab.runs.local.jobfiles import jobs_dir, remove_all_but, request_stop


def test_recovery_keeps_a_running_jobs_file_being_written_and_removes_a_settled_jobs(tmp_path):
    jobs = jobs_dir(tmp_path)
    jobs.mkdir(parents=True)
    for name in ("1.json", ".1.stop.x7k2.tmp", "2.json", ".2.stop.q9a1.tmp"):
        (jobs / name).write_text("{}")
    remove_all_but(tmp_path, {"1"})  # job 1 runs; job 2 was settled
    assert sorted(p.name for p in jobs.iterdir()) == [".1.stop.x7k2.tmp", "1.json"]


def test_a_stop_request_for_a_job_whose_files_are_gone_is_no_error(tmp_path, monkeypatch):
    import lab.runs.local.jobfiles as jobfiles

    def removed_meanwhile(path, data, fsync=True):  # the runner settled the job between the check and the write
        raise FileNotFoundError(path)

    monkeypatch.setattr(jobfiles, "atomic_write_json", removed_meanwhile)
    request_stop(tmp_path, {"id": 1, "token": "t"}, grace=1.0)
