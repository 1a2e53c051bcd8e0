"""The fast document model (lab.search.fastmodel: onnxruntime, int8) against the NumPy model, its cached graph,
and the fallback to NumPy where onnxruntime is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec

import pytest

from helpers import REPO
from helpers import SENTENCES, corpus_texts

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
if find_spec("onnxruntime") is None or find_spec("onnx") is None:  # found, not imported: lab turns its telemetry off first
    pytest.skip("onnxruntime or onnx is not installed", allow_module_level=True)

# Prints how the process embeds, the modules it imported, and the vectors of a few real texts.
PROBE = """
import json, sys
from lab.search import fastmodel
texts = json.loads(sys.argv[1])
vectors = fastmodel.load().embed(texts)
print(json.dumps({"how": fastmodel.summary(), "vectors": vectors.tolist(),
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def probe(cache, texts, extra_path=None) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=os.pathsep.join(
        [p for p in (extra_path, str(REPO), os.environ.get("PYTHONPATH")) if p]))
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(texts)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # building the graph says nothing (no quantization advice, no ORT notes)
    return json.loads(proc.stdout)


def graphs(cache) -> list:
    folder = cache / "lab"
    return sorted(folder.glob("*.onnx")) if folder.exists() else []


@pytest.mark.slow  # builds the int8 graphs
def test_vectors_stay_within_cosine_0_99_of_the_numpy_model(tmp_path, monkeypatch):
    """Each document vector from the int8 path is within cosine 0.99 of the float32 NumPy model's, on real
    abstracts (SciFact, most truncated at 256 word pieces) and short sentences. Two different texts, even on
    one topic, are far further apart (MiniLM puts near-paraphrases at ~0.8-0.9), so a ranking mixing vectors of
    both paths (a search embeds a few edited notes with NumPy) is sound. Measured on all 2,101 SciFact abstracts:
    min 0.993, mean 0.997; texts under 64 word pieces go through float32 (cosine 1.0000)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from lab.search import fastmodel, model

    texts = corpus_texts(48) + SENTENCES
    fast = fastmodel.load()
    assert fastmodel.summary().startswith("onnxruntime int8"), fastmodel.summary()
    ours = fast.embed(texts)
    reference = model.load().embed(texts, model.DOC_TOKENS)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * reference).sum(1)
    assert cosines.min() >= 0.99, cosines
    assert cosines.mean() >= 0.995, cosines.mean()
    # batching and order do not change the vectors beyond int8 rounding of a differently shaped batch
    alone = np.stack([fast.embed([t])[0] for t in texts[:6]])
    assert ((alone * ours[:6]).sum(1)).min() > 0.99


@pytest.mark.slow  # builds the int8 graphs
def test_the_graphs_are_built_once_reused_and_rebuilt_when_damaged(tmp_path):
    cache = tmp_path / "cache"
    texts = corpus_texts(2) + SENTENCES[:2]  # long ones (the int8 graph) and short ones (the float32 graph)
    first = probe(cache, texts)
    assert first["how"].startswith("onnxruntime int8"), first["how"]
    assert not {"torch", "transformers", "sentence_transformers"} & set(first["modules"])
    built = graphs(cache)
    assert [p.name[-10:] for p in built] == ["-fp32.onnx", "-int8.onnx"]
    assert not [p for p in (cache / "lab").iterdir() if p.name.startswith(".")]  # no temporary left behind
    stats = [p.stat() for p in built]

    again = probe(cache, texts)
    assert graphs(cache) == built and [p.stat().st_mtime_ns for p in built] == [s.st_mtime_ns for s in stats]
    assert again["vectors"] == first["vectors"]  # reused, not rebuilt

    int8 = built[1]
    int8.write_bytes(int8.read_bytes()[: stats[1].st_size // 3])  # cut short, as by a full disk
    repaired = probe(cache, texts)
    assert repaired["how"].startswith("onnxruntime int8")
    assert graphs(cache) == built and int8.stat().st_size == stats[1].st_size
    assert repaired["vectors"] == first["vectors"]


@pytest.mark.slow  # builds the int8 graphs
def test_an_unwritable_cache_builds_the_graph_for_the_process(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache would be a folder under a file: every write fails (even as root)
    found = probe(blocker, corpus_texts(1) + SENTENCES[:2])
    assert found["how"].startswith("onnxruntime int8")
    assert blocker.read_text() == ""


def test_without_onnxruntime_the_numpy_model_embeds(tmp_path):
    blocked = tmp_path / "blocked"
    (blocked / "onnxruntime").mkdir(parents=True)
    (blocked / "onnxruntime" / "__init__.py").write_text("raise ImportError('blocked', name='onnxruntime')\n")
    found = probe(tmp_path / "cache", SENTENCES[:3], extra_path=str(blocked))
    assert found["how"] == "the NumPy model (onnxruntime is not installed (pip install onnxruntime onnx))"
    assert graphs(tmp_path / "cache") == []
    from lab.search import model

    reference = model.load().embed(SENTENCES[:3], model.DOC_TOKENS)
    assert np.allclose(np.array(found["vectors"], dtype=np.float32), reference, atol=1e-5)


@pytest.mark.slow  # builds the int8 graphs
@pytest.mark.real_process  # onnxruntime is blocked through PYTHONPATH, which only a new process reads
def test_reindex_embeds_with_the_fast_model_or_says_why_not(lab, tmp_path):
    from lab.search import index

    for i, text in enumerate(corpus_texts(20)):
        (lab.root / "papers" / f"p{i}.md").write_text(text + "\n", encoding="utf-8")
    blocked = tmp_path / "blocked"
    (blocked / "onnxruntime").mkdir(parents=True)
    (blocked / "onnxruntime" / "__init__.py").write_text("raise ImportError('blocked', name='onnxruntime')\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    slow = lab("reindex", "--json", check=0,
               env={**env, "PYTHONPATH": os.pathsep.join([str(blocked), str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert "lab: embedding with the slower NumPy model: onnxruntime is not installed" in slow.stderr
    passages = json.loads(slow.stdout)["embedded"]
    assert passages >= 20  # every note, a long one as several passages
    conn = index.connect(lab.root)
    numpy_vectors = dict(conn.execute("SELECT hash, vec FROM doc_vectors"))
    conn.close()

    (lab.root / ".lab" / "index.db").unlink()
    fast = lab("reindex", "--json", check=0, env=env)
    assert "NumPy" not in fast.stderr and json.loads(fast.stdout)["embedded"] == passages
    assert len(graphs(tmp_path / "cache")) == 2
    conn = index.connect(lab.root)
    fast_vectors = dict(conn.execute("SELECT hash, vec FROM doc_vectors"))
    conn.close()
    assert fast_vectors.keys() == numpy_vectors.keys()
    for key, vec in fast_vectors.items():
        a, b = np.frombuffer(vec, dtype=np.float32), np.frombuffer(numpy_vectors[key], dtype=np.float32)
        assert a @ b >= 0.99


@pytest.mark.slow  # builds the int8 graphs
def test_onnxruntime_writes_no_telemetry_id(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env.pop("ORT_TELEMETRY_DISABLED", None)
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(SENTENCES[:1])], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert sorted(p.name for p in (home / ".cache").iterdir()) == ["lab"]  # no Microsoft/DeveloperTools/deviceid
