"""Find what a question needs in the library: passages by meaning and by words, or whole documents.

Passages come from two rankings fused by reciprocal rank (each chunk scores Σ 1/(60 + rank)):
SQLite's FTS5 BM25, which catches names and rare words, and MiniLM cosine similarity, which
catches paraphrases. Vectors are read into one matrix and kept until the index changes, so a
query over 10,000 chunks is one matrix product. `gather` decides what goes into the prompt:
everything when the documents fit the budget whole, every part (for a map-reduce) when the
question is about the whole document ("summarise", "list every …"), else the best passages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from slmchat.core.documents.extract import Status
from slmchat.core.documents.index import DocumentIndex

RRF_K = 60
CANDIDATES = 50  # how deep each ranking is read before fusing
MAX_PASSAGES = 6
Mode = Literal["hybrid", "fts", "vector"]

_STOPWORDS = frozenset(
    "a an and are as at be by did do does for from had has have he her his how i in is it its me my "
    "not of on or she so that the their them they this to was were what when where which who whom "
    "why will with you your".split())
_WHOLE_DOCUMENT = re.compile(
    r"\b(summari[sz]e|summary|overview|outline|gist|main (?:points|ideas|themes)|key points|"
    r"list (?:all|every|each)|every|all (?:the )?(?:\w+ )?(?:mentioned|named|listed)|how many|"
    r"table of contents|whole (?:document|text|file))\b", re.IGNORECASE)


class QueryEmbedder(Protocol):
    model_name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def approx_tokens(text: str) -> int:
    """A cautious token count without a tokenizer (English averages about 4 characters a token)."""
    return math.ceil(len(text) / 3.5)


def is_whole_document_question(question: str) -> bool:
    """A question about the whole document, which no handful of passages can answer."""
    return bool(_WHOLE_DOCUMENT.search(question))


def fts_query(text: str) -> str:
    """The question's words as an FTS5 OR-query (quoted, so no word is read as an operator)."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


@dataclass(frozen=True)
class Passage:
    file_id: int
    path: str
    place: str
    text: str
    chunk_id: int | None = None  # None: a whole document
    score: float = 0.0
    lead: int = 0  # characters at the start of `text` repeated from the passage before

    @property
    def own_text(self) -> str:
        """The passage without the overlap it repeats (what a snippet shows)."""
        return self.text[self.lead:]


@dataclass(frozen=True)
class Context:
    """What goes into the prompt: `sources` numbered from 1; for map-reduce, `parts` (each fits
    the budget) are read one at a time first."""

    mode: Literal["whole", "passages", "map_reduce", "empty"]
    sources: list[Passage]
    parts: list[list[Passage]]


class Retriever:
    """Searches one DocumentIndex; `embedder` (None: words only) must be the model that indexed."""

    def __init__(self, index: DocumentIndex, embedder: QueryEmbedder | None) -> None:
        self.index = index
        self.embedder = embedder
        self._cache: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    # --- rankings ---------------------------------------------------------------------------
    def _scope(self, collections: Sequence[int] | None) -> tuple[str, list[int]]:
        if not collections:
            return "", []
        return f" AND f.collection_id IN ({','.join('?' * len(collections))})", list(collections)

    def fts(self, query: str, limit: int = CANDIDATES, collections: Sequence[int] | None = None) -> list[int]:
        """Chunk ids, best BM25 first."""
        match = fts_query(query)
        if not match:
            return []
        where, args = self._scope(collections)
        rows = self.index.conn.execute(
            "SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN files f ON f.id = c.file_id "
            f"WHERE chunks_fts MATCH ?{where} ORDER BY bm25(chunks_fts) LIMIT ?", [match, *args, limit])
        return [row[0] for row in rows]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, their collections, unit vectors), reread only when the index changed."""
        generation = self.index.generation()
        if self._cache is None or self._cache[0] != generation:
            assert self.embedder is not None
            rows = self.index.conn.execute(
                "SELECT v.chunk_id, f.collection_id, v.vector FROM vectors v JOIN chunks c ON c.id = v.chunk_id "
                "JOIN files f ON f.id = c.file_id WHERE v.model = ? AND length(v.vector) = ?",
                (self.embedder.model_name, 4 * self.embedder.dim)).fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            owners = np.array([r[1] for r in rows], dtype=np.int64)
            matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), self.embedder.dim)
            self._cache = (generation, ids, owners, matrix)
        return self._cache[1], self._cache[2], self._cache[3]

    def vector(self, query: str, limit: int = CANDIDATES, collections: Sequence[int] | None = None) -> list[int]:
        """Chunk ids, closest in meaning first (empty without an embedder)."""
        if self.embedder is None or not query.strip():
            return []
        ids, owners, matrix = self._vectors()
        if collections:
            keep = np.isin(owners, list(collections))
            ids, matrix = ids[keep], matrix[keep]
        if not len(ids):
            return []
        scores = matrix @ self.embedder.embed([query])[0]
        top = np.argpartition(-scores, min(limit, len(scores) - 1))[:limit]
        return [int(ids[i]) for i in top[np.argsort(-scores[top], kind="stable")]]

    def search(self, query: str, limit: int = MAX_PASSAGES, *, mode: Mode = "hybrid",
               collections: Sequence[int] | None = None) -> list[Passage]:
        """The `limit` best passages for `query`, fused from both rankings (or one, by `mode`)."""
        rankings = []
        if mode in ("hybrid", "fts"):
            rankings.append(self.fts(query, CANDIDATES, collections))
        if mode in ("hybrid", "vector"):
            rankings.append(self.vector(query, CANDIDATES, collections))
        fused: dict[int, float] = {}
        for ranking in rankings:
            for rank, chunk_id in enumerate(ranking):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused, key=lambda i: -fused[i])[:limit]
        return [self._passage(chunk_id, fused[chunk_id]) for chunk_id in best]

    def _passage(self, chunk_id: int, score: float) -> Passage:
        row = self.index.conn.execute(
            "SELECT c.file_id, f.path, c.place, c.text, c.lead FROM chunks c JOIN files f ON f.id = c.file_id "
            "WHERE c.id = ?", (chunk_id,)).fetchone()
        return Passage(row[0], row[1], row[2], row[3], chunk_id, score, row[4])

    # --- what the prompt gets -----------------------------------------------------------------
    def documents(self, collections: Sequence[int] | None = None) -> list[Passage]:
        """Every indexed document in scope, whole."""
        where, args = self._scope(collections)
        rows = self.index.conn.execute(
            f"SELECT f.id, f.path, t.text FROM files f JOIN texts t ON t.file_id = f.id WHERE f.status = ?{where} "
            "ORDER BY f.id", [Status.INDEXED.value, *args])
        return [Passage(r[0], r[1], "whole document", r[2]) for r in rows]

    def parts(self, collections: Sequence[int] | None, budget: int,
              tokens: Callable[[str], int]) -> list[list[Passage]]:
        """Every chunk in scope, in document order, grouped so each group fits `budget`."""
        where, args = self._scope(collections)
        rows = self.index.conn.execute(
            "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.status = ?"
            f"{where} ORDER BY f.id, c.ordinal", [Status.INDEXED.value, *args]).fetchall()
        groups: list[list[Passage]] = [[]]
        used = 0
        for (chunk_id,) in rows:
            passage = self._passage(chunk_id, 0.0)
            size = tokens(passage.text)
            if groups[-1] and used + size > budget:
                groups.append([])
                used = 0
            groups[-1].append(passage)
            used += size
        return [group for group in groups if group]

    def _by_relevance(self, question: str, documents: list[Passage],
                      collections: Sequence[int] | None) -> list[Passage]:
        """Whole documents, the one holding the best passage first (a small model reads the
        first source most closely)."""
        order = list(dict.fromkeys(p.file_id for p in self.search(question, CANDIDATES, collections=collections)))
        rank = {file_id: i for i, file_id in enumerate(order)}
        return sorted(documents, key=lambda p: rank.get(p.file_id, len(rank)))

    def gather(self, question: str, budget: int, *, collections: Sequence[int] | None = None,
               tokens: Callable[[str], int] = approx_tokens) -> Context:
        """The context for `question` within `budget` tokens of sources."""
        whole = self.documents(collections)
        if not whole:
            return Context("empty", [], [])
        if sum(tokens(p.text) for p in whole) <= budget:
            return Context("whole", self._by_relevance(question, whole, collections), [])
        if is_whole_document_question(question):
            parts = self.parts(collections, budget, tokens)
            return Context("map_reduce", [p for part in parts for p in part], parts)
        chosen: list[Passage] = []
        used = 0
        for passage in self.search(question, MAX_PASSAGES, collections=collections):
            size = tokens(passage.text)
            if used + size > budget and len(chosen) >= 1:
                break
            chosen.append(passage)
            used += size
        return Context("passages", chosen, [])
