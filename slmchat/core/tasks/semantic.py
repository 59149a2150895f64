"""Semantic search over every conversation: message vectors in SQLite, ranked by cosine similarity.

Vectors live in the store's `embeddings` table (message_id, model, dim, float32 little-endian
blob, created), one per message and embedding model. Back-filling is split by thread: a worker
calls `index_pending` on its own read-only `Reader` (reading and embedding, the slow part) and
hands the rows to the GUI thread, which writes them with `save_embeddings` on the `Store` (the
one writer). Full-text search stays the default: semantic search is offered only when an
embedding model is on disk (`embedding_model`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

from slmchat.core.errors import ModelFileError
from slmchat.core.generation import Role
from slmchat.core.gguf.check import GGUFInfo
from slmchat.core.store.reader import Reader
from slmchat.core.store.records import to_text, utc_now
from slmchat.core.store.store import Store
from slmchat.core.tasks.capabilities import Capability, capabilities

SNIPPET_CHARS = 160

_PENDING_SQL = """
    SELECT m.id, m.content FROM messages m
    LEFT JOIN embeddings e ON e.message_id = m.id AND e.model = :model
    WHERE m.id > :after AND e.message_id IS NULL
      AND m.status != 'streaming' AND trim(m.content) != ''
    ORDER BY m.id LIMIT :limit
"""
_VECTORS_SQL = """
    SELECT e.message_id, e.vector FROM embeddings e
    JOIN messages m ON m.id = e.message_id
    JOIN conversations c ON c.id = m.conversation_id
    WHERE e.model = :model AND e.dim = :dim AND c.deleted_at IS NULL
"""
_HIT_SQL = """
    SELECT m.id, m.conversation_id, m.role, m.content, m.created, c.title
    FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?
"""


class TextEmbedder(Protocol):
    """What semantic search needs from an embedding model (embeddings.Embedder, or its client
    in the engine process)."""

    model_name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingRow:
    """One message's vector, ready to store; picklable, so it can cross a process pipe."""

    message_id: int
    model: str
    vector: np.ndarray  # float32, unit length


@dataclass(frozen=True)
class SemanticHit:
    conversation_id: int
    conversation_title: str
    message_id: int
    role: Role
    snippet: str
    created: datetime
    score: float  # cosine similarity, -1..1
    in_thinking: bool = False  # search by meaning reads the stored answers only, never the thinking


def embedding_model(models: Iterable[GGUFInfo]) -> GGUFInfo | None:
    """The first model on disk that can embed text, or None (then search stays full-text)."""
    for info in models:
        try:
            if Capability.EMBED in capabilities(info):
                return info
        except ModelFileError:
            continue
    return None


def index_pending(reader: Reader, embedder: TextEmbedder, *, batch: int = 32,
                  after_id: int = 0) -> list[EmbeddingRow]:
    """Embed up to `batch` finished messages (id > after_id) that have no vector from this model.

    Returns the rows without writing them (a worker's connection is read-only). Call again
    with `after_id` = the last row's message_id until it returns []; an empty list means done.
    """
    rows = list(reader.db.query(_PENDING_SQL, {"model": embedder.model_name, "after": after_id, "limit": batch}))
    if not rows:
        return []
    vectors = embedder.embed([row["content"] for row in rows])
    return [EmbeddingRow(row["id"], embedder.model_name, vector.astype(np.float32))
            for row, vector in zip(rows, vectors)]


def save_embeddings(store: Store, rows: Sequence[EmbeddingRow]) -> None:
    """Write vectors in one transaction; a message's vector from another model is replaced."""
    created = to_text(utc_now())
    with store.db.atomic():
        store.db.conn.executemany(
            "INSERT OR REPLACE INTO embeddings (message_id, model, dim, vector, created) "
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?)",
            [(r.message_id, r.model, int(r.vector.shape[0]), r.vector.astype("<f4").tobytes(), created,
              r.message_id) for r in rows],
        )


def index_all(store: Store, embedder: TextEmbedder, *, batch: int = 32) -> int:
    """Embed every pending message on one thread (the CLI and tests); returns how many."""
    done = 0
    after = 0
    while rows := index_pending(store, embedder, batch=batch, after_id=after):
        save_embeddings(store, rows)
        done += len(rows)
        after = rows[-1].message_id
    return done


def search(reader: Reader, embedder: TextEmbedder, query: str, k: int = 10) -> list[SemanticHit]:
    """The k messages closest in meaning to `query`, best first (trashed conversations skipped)."""
    if not query.strip() or k <= 0:
        return []
    found = list(reader.db.query(_VECTORS_SQL, {"model": embedder.model_name, "dim": embedder.dim}))
    if not found:
        return []
    ids = np.array([row["message_id"] for row in found])
    matrix = np.frombuffer(b"".join(row["vector"] for row in found), dtype="<f4").reshape(len(found), embedder.dim)
    scores = matrix @ embedder.embed([query])[0]
    best = np.argsort(-scores, kind="stable")[:k]
    return [_hit(reader, int(ids[i]), float(scores[i])) for i in best]


def _hit(reader: Reader, message_id: int, score: float) -> SemanticHit:
    row = next(reader.db.query(_HIT_SQL, [message_id]))
    content = " ".join(row["content"].split())
    snippet = content if len(content) <= SNIPPET_CHARS else content[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
    return SemanticHit(row["conversation_id"], row["title"], row["id"], Role(row["role"]), snippet,
                       datetime.fromisoformat(row["created"]), score)
