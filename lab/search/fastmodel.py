"""Embedding many documents fast: all-MiniLM-L6-v2 as an ONNX graph run by onnxruntime, its matrix products in int8.

The NumPy model (lab.search.model) embeds a query in milliseconds but a whole lab slowly (~0.08 s a document of
256 word pieces on one core). For documents, this module builds the same network as an ONNX graph from the
packaged safetensors weights (the `onnx` package's helper API; no torch, no export): onnxruntime's fused BERT
operators (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu), then its dynamic int8
quantization of the matrix products (per-channel weights; activations quantized at run time, which the AVX-512
VNNI instructions of recent CPUs multiply several times faster than float32). Texts shorter than 64 word pieces
go through the float32 graph (see FastMiniLM.SHORT). On 2 cores: ~12 ms a 256-piece document against ~90 ms
with NumPy on one. The graphs are built once (~2 s) and kept in the user's cache (`$XDG_CACHE_HOME/lab/`, else
`~/.cache/lab/`), named after the weights' hash and BUILDER_VERSION, written atomically; a damaged file is built
again, and where the cache cannot be written they are built in a temporary directory for this process.

Vectors from this path and from the NumPy path sit together in one index (a search embeds a few edited notes
inline with NumPy): their cosine to the float32 NumPy vectors is at least 0.99 on real text (all 2,101 SciFact
abstracts: min 0.993, mean 0.997; tests/search/test_fastmodel.py checks a bound of 0.99 each), far closer than any two
different texts, so rankings mix them safely. Without onnxruntime or onnx (or where the graphs cannot be built
or loaded), `load()` returns the NumPy model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

from lab.search import model as numpy_model
from lab.search.weights import cache_dir  # where built graphs are kept, beside lab's other caches

BUILDER_VERSION = 1  # bump when the graph built below changes: the cached file's name changes with it
# Matrix products kept in float32. The inputs of the feed-forward output products (1536 GELU activations) are
# quantized per tensor at run time, and a few large activations cost the others their precision; those of layers
# 0 and 2 did most of the damage on SciFact abstracts: all in int8, cosine to the float32 vectors min 0.991 /
# mean 0.995; these two in float32, min 0.995 / mean 0.997, for ~10% more time (the four others: < 0.001 each).
FLOAT_NODES = ("ffn_out0", "ffn_out2")
_LOADED: dict = {}


def _weights_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def graph_paths(directory: str, folder: str | None = None) -> tuple[str, str]:
    """The cached graphs' paths (float32, int8) for the model in `directory`: named after its weights' hash and
    BUILDER_VERSION, in `folder` (default: cache_dir())."""
    digest = _weights_hash(os.path.join(directory, "model.safetensors"))
    stem = os.path.join(folder or cache_dir(), f"minilm-l6-{digest}-v{BUILDER_VERSION}")
    return stem + "-fp32.onnx", stem + "-int8.onnx"


def _no_telemetry() -> None:
    """Keep onnxruntime from writing a device id (~/.cache/Microsoft/) and sending usage events (its Linux builds do
    since 1.2x unless told not to, before it is imported): lab is a local tool. Variables a user set are kept."""
    for name in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):  # the name differs between releases
        os.environ.setdefault(name, "1")


def build(directory: str, paths: tuple[str, str]) -> None:
    """Write the float32 and int8 ONNX graphs of the model in `directory` to `paths` (each atomically: a temporary
    file in the same folder, then a rename)."""
    _no_telemetry()
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    w = {k.removeprefix("bert."): np.asarray(v, dtype=np.float32)
         for k, v in numpy_model.read_safetensors(os.path.join(directory, "model.safetensors")).items()}
    inits = []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    eps = 1e-12
    nodes = [
        helper.make_node(
            "EmbedLayerNormalization",
            ["input_ids", "", const("word", w["embeddings.word_embeddings.weight"]),
             # the token type is always 0: its embedding is folded into the positions' (one addition less)
             const("position", w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]),
             "", const("emb_gamma", w["embeddings.LayerNorm.weight"]), const("emb_beta", w["embeddings.LayerNorm.bias"]),
             "attention_mask"],
            ["x0", "mask_index"], domain="com.microsoft", epsilon=eps, name="embed"),
    ]
    x = "x0"
    for i in range(6):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T
        qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        nodes += [
            helper.make_node("Attention", [x, const(f"qkv_w{i}", qkv_w), const(f"qkv_b{i}", qkv_b), "mask_index"],
                             [f"ctx{i}"], domain="com.microsoft", num_heads=12, name=f"attention{i}"),
            helper.make_node("MatMul", [f"ctx{i}", const(f"o_w{i}", w[p + "attention.output.dense.weight"].T)],
                             [f"o{i}"], name=f"output{i}"),
            helper.make_node("SkipLayerNormalization",
                             [f"o{i}", x, const(f"ln1_g{i}", w[p + "attention.output.LayerNorm.weight"]),
                              const(f"ln1_b{i}", w[p + "attention.output.LayerNorm.bias"]),
                              const(f"o_b{i}", w[p + "attention.output.dense.bias"])],
                             [f"a{i}"], domain="com.microsoft", epsilon=eps, name=f"ln1_{i}"),
            helper.make_node("MatMul", [f"a{i}", const(f"i_w{i}", w[p + "intermediate.dense.weight"].T)],
                             [f"h{i}"], name=f"intermediate{i}"),
            helper.make_node("BiasGelu", [f"h{i}", const(f"i_b{i}", w[p + "intermediate.dense.bias"])],
                             [f"g{i}"], domain="com.microsoft", name=f"gelu{i}"),
            helper.make_node("MatMul", [f"g{i}", const(f"f_w{i}", w[p + "output.dense.weight"].T)],
                             [f"f{i}"], name=f"ffn_out{i}"),
            helper.make_node("SkipLayerNormalization",
                             [f"f{i}", f"a{i}", const(f"ln2_g{i}", w[p + "output.LayerNorm.weight"]),
                              const(f"ln2_b{i}", w[p + "output.LayerNorm.bias"]),
                              const(f"f_b{i}", w[p + "output.dense.bias"])],
                             [f"x{i + 1}"], domain="com.microsoft", epsilon=eps, name=f"ln2_{i}"),
        ]
        x = f"x{i + 1}"
    nodes.append(helper.make_node("Identity", [x], ["hidden"], name="hidden"))
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "length"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "length"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", numpy_model.DIM])],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              producer_name="lab", producer_version=str(BUILDER_VERSION))
    folder = os.path.dirname(paths[0]) or "."
    os.makedirs(folder, exist_ok=True)
    logging.disable(logging.WARNING)  # quantize_dynamic's advice to pre-process (for image models) is not for users
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
            fp32 = os.path.join(tmp, "fp32.onnx")
            onnx.save(proto, fp32)
            int8 = os.path.join(tmp, "int8.onnx")
            quantize_dynamic(fp32, int8, op_types_to_quantize=["MatMul", "Attention"], per_channel=True,
                             nodes_to_exclude=list(FLOAT_NODES), weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
            os.replace(fp32, paths[0])
            os.replace(int8, paths[1])
    finally:
        logging.disable(logging.NOTSET)


class FastMiniLM:
    """all-MiniLM-L6-v2 through onnxruntime: `embed(texts)` -> float32 array (n, 384) of unit vectors, like
    lab.search.model.MiniLM's (same tokenizer, same mean pooling)."""

    BATCH = 16  # texts a run: large enough for the matrix products, small enough to keep padding and caches small
    # Texts shorter than this (in word pieces) go through the float32 graph: a mean over few tokens averages
    # little of int8's rounding away (an empty text's vector: cosine 0.978 in int8), and they cost little.
    SHORT = 64

    def __init__(self, directory: str, sessions, numpy):
        from tokenizers import Tokenizer

        self.np = numpy
        self.sessions = sessions  # (float32, int8)
        self.tokenizer = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.reason = None

    def embed(self, texts: list[str], max_tokens: int = numpy_model.DOC_TOKENS, batch: int = BATCH):
        """Unit vectors of `texts` (in order), batched by length so that little is padding."""
        np = self.np
        self.tokenizer.enable_truncation(max_length=max_tokens)
        ids = [e.ids for e in self.tokenizer.encode_batch([t or " " for t in texts])]
        out = np.empty((len(texts), numpy_model.DIM), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for session, part in zip(self.sessions, ([i for i in order if len(ids[i]) < self.SHORT],
                                                 [i for i in order if len(ids[i]) >= self.SHORT])):
            for start in range(0, len(part), batch):
                chunk = part[start : start + batch]
                out[chunk] = self.forward([ids[i] for i in chunk], session)
        return out

    def forward(self, seqs: list[list[int]], session):
        np = self.np
        ids, mask = numpy_model.padded(seqs, np.int32, np.int32)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return numpy_model.mean_unit(hidden, mask)


def _sessions(paths: tuple[str, ...], threads: int) -> tuple:
    return tuple(_session(path, threads) for path in paths)


def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its notes are not for lab's users
    # Waiting threads sleep instead of spinning: on a busy machine (a niced background embedder, training beside
    # it) spinning threads burn the cores others need; it costs ~5% on an idle one.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def load(threads: int | None = None):
    """The fast document model on `threads` threads (default: every usable core), loaded once per process, its
    graph built first when the cache has none (or a damaged one). Where onnxruntime or onnx is missing, or the
    graph cannot be built or loaded, the NumPy model (lab.search.model.load()) instead, with `reason` set on it
    saying why (one line). Raises lab.search.model.Unavailable when neither can run."""
    from lab.core.process import usable_cores

    threads = threads or usable_cores()
    if threads in _LOADED:
        return _LOADED[threads]
    directory = numpy_model.model_dir()
    try:
        found = _load_fast(directory, threads)
    except _NoFastPath as e:
        found = numpy_model.load()
        found.reason = str(e)
    _LOADED[threads] = found
    return found


def summary() -> str | None:
    """How this process embeds documents (for logs): "onnxruntime int8, N threads" or "NumPy (why)"; None before
    `load`."""
    for threads, found in _LOADED.items():
        if isinstance(found, FastMiniLM):
            return f"onnxruntime int8, {threads} thread(s)"
        return f"the NumPy model ({found.reason})"
    return None


class _NoFastPath(Exception):
    pass


def _load_fast(directory: str, threads: int) -> FastMiniLM:
    from importlib.util import find_spec

    _no_telemetry()
    try:
        import numpy
        import onnxruntime  # noqa: F401
        if find_spec("onnx") is None:  # the builder's: imported only to build the graphs
            raise ImportError(name="onnx")
    except ImportError as e:
        raise _NoFastPath(f"{e.name} is not installed (pip install onnxruntime onnx)") from None
    paths = graph_paths(directory)
    try:
        sessions = _sessions(paths, threads)
    except Exception:  # none yet, or a damaged file (a full disk, a killed build by an older lab): build them again
        try:
            build(directory, paths)
            sessions = _sessions(paths, threads)
        except OSError:  # the cache cannot be written (a read-only home): build them for this process only
            try:
                with tempfile.TemporaryDirectory(prefix="lab-minilm-") as tmp:
                    paths = graph_paths(directory, tmp)
                    build(directory, paths)
                    sessions = _sessions(paths, threads)  # read whole: the files may go
            except Exception as e:
                raise _NoFastPath(f"the onnxruntime model could not be built: {type(e).__name__}: {e}") from None
        except Exception as e:
            raise _NoFastPath(f"the onnxruntime model could not be built: {type(e).__name__}: {e}") from None
    return FastMiniLM(directory, sessions, numpy)
