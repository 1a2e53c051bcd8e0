"""What semantic search embeds of an indexed document, and the hash its vector is stored under.

Kept apart from lab.search.embed (the model and the background embedder) and lab.search.documents (reading files):
the index computes these hashes as it writes documents, and the search path imports this module, so it imports
nothing.
"""

from __future__ import annotations


def embed_text(type: str, title: str | None, section: str | None, tags, body: str | None) -> str | None:
    """The text a document is embedded from, or None for a document that is not embedded (run records)."""
    if type == "run":
        return None
    head = title or ""
    if section:
        head = f"{head} › {section}" if head else section
    parts = [head]
    if type == "experiment" and not section and tags:
        parts.append(", ".join(tags))
    if body:
        parts.append(body[:4000])  # the model reads 256 tokens at most; the rest only costs tokenizing
    return "\n".join(p for p in parts if p)


def text_hash(type, title, section, tags, body) -> str | None:
    """The hash of `embed_text` (vectors are stored once per text), or None for a document that is not embedded."""
    text = embed_text(type, title, section, tags, body)
    if text is None:
        return None
    import hashlib

    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
