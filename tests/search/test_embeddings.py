"""The torch-free MiniLM (lab.search.model) against the real torch model, on real sentences."""

from __future__ import annotations

import json

import pytest

from helpers import REPO, SENTENCES, corpus_texts

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")


@pytest.mark.slow  # loads the torch model
def test_vectors_match_the_torch_model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from lab.search import model

    texts = SENTENCES + corpus_texts(12)
    ours = model.load().embed(texts, model.DOC_TOKENS)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32

    # sentence-transformers' arithmetic for this model: BERT, mean over the tokens, L2 normalised, 256 tokens.
    directory = model.model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    bert = transformers.AutoModel.from_pretrained(directory).eval()
    with torch.no_grad():
        batch = tokenizer([t or " " for t in texts], padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        reference = torch.nn.functional.normalize(pooled, dim=1).numpy()
    cosines = (ours * reference).sum(1)
    assert cosines.min() > 0.999, cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_order_and_batching_do_not_change_vectors():
    from lab.search import model

    texts = corpus_texts(5) + SENTENCES[:3]
    together = model.load().embed(texts, batch=3)
    alone = np.stack([model.load().embed([t])[0] for t in texts])
    assert (together * alone).sum(1).min() > 0.99999


def test_meaning_is_closer_than_words():
    from lab.search import model

    warmup, ramp, other = model.load().embed([
        "learning rate warmup", "a linear ramp of the step size at the start of training",
        "the tokenizer splits Japanese text into characters",
    ])
    assert warmup @ ramp > warmup @ other + 0.1


def test_plain_wordpiece_tokenizes_as_tokenizers_does():
    """A query's tokens come from lab's own WordPiece when the text is ASCII: the same ids as `tokenizers`, on
    every SciFact claim and abstract (long ones truncated), and on random ASCII with control characters, long
    words and runs of punctuation; other text is left to `tokenizers`."""
    import random
    import string

    from tokenizers import Tokenizer

    from lab.search import model

    directory = model.model_dir()
    plain = model.WordPiece(f"{directory}/vocab.txt")
    reference = Tokenizer.from_file(f"{directory}/tokenizer.json")
    reference.no_padding()
    reference.enable_truncation(max_length=model.QUERY_TOKENS)
    data = REPO / "benchmarks" / "data" / "scifact-dev"
    texts = [json.loads(line)["text"] for name in ("corpus.jsonl", "queries.jsonl")
             for line in (data / name).read_text(encoding="utf-8").splitlines()]
    rng = random.Random(15)
    alphabet = string.printable + "\x00\x01\x07\x0b\x0c\x1c\x1f\x7f"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(1000)]
    texts += ["x" * n + " warm" + "up" * n for n in range(97, 103)] + SENTENCES
    encoded = 0
    for text in texts:
        ids = plain.encode(text, model.QUERY_TOKENS)
        if ids is not None:
            assert ids == reference.encode(text).ids, text
            encoded += 1
    assert encoded > 2500
    for text in ("学習率ウォームアップ", "naïve warm-up", "what does [MASK] mean"):
        assert plain.encode(text, model.QUERY_TOKENS) is None  # left to `tokenizers`
