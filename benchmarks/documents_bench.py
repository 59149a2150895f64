"""Document library figures: embedding cost, indexing throughput, query latency over 10,000 chunks, recall@5.

Goals: 1,000 pages indexed in under 2 minutes; a hybrid query over 10,000 chunks in under 100 ms;
recall@5 of at least 0.9, against words only (FTS5 BM25) and meaning only (MiniLM cosine).

- Embedding cost: `--cost-chunks` passages of 900 characters embedded by the real MiniLM with one
  context of one thread, one context of a thread per core, and a one-thread context per core
  (what the indexer uses). CPU seconds per passage are our cost; wall time beyond them is other
  programs' load (the machine is shared), printed beside each figure.
- Throughput: `--pages` pages of 3,000 characters (sentences of the public-domain test corpus,
  recombined; 10 pages a file) indexed by the real background indexer with the real MiniLM,
  and once more without an embedder (words only); the indexer uses `--indexer-cores` cores
  (default: every physical core, as the app indexes).
- Latency: an index of `--chunks` chunks, texts recombined from the corpus (real FTS work) and
  vectors random unit vectors (a matrix product costs the same whatever the values; embedding
  10,000 chunks for real would take this machine most of an hour). Each query is embedded by
  the real MiniLM in its process; the figure is the whole `Retriever.search` call, and the
  query's embedding alone.
- Recall@5: the corpus plus `--distractors` chunks recombined from its other sentences (the
  sentences holding answers left out), all embedded by the real MiniLM; a question counts when
  a top-5 passage of the right file holds its known answer.

The MiniLM file is the one a user downloads by default: the catalog's default quantization
(Q8_0), made from the real weights by llama.cpp's quantizer (tests/minilm_gguf.py).

Run: .venv/bin/python benchmarks/documents_bench.py [--pages 1000] [--chunks 10000] [--distractors 300] [--threads 1]
     [--indexer-cores N] [--cost-chunks 64] [--only cost|throughput|latency|recall] [--quant Q8_0|F16|BF16]
     [--minilm FILE.gguf] [--results FILE.json]
(--quant: another conversion of the same weights; --minilm: any MiniLM GGUF)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import common  # noqa: E402  (benchmarks/ is the script's own folder)

CORPUS = ROOT / "tests" / "core" / "documents" / "corpus"
QUESTIONS = json.loads((ROOT / "tests" / "core" / "documents" / "questions.json").read_text(encoding="utf-8"))
PAGE_CHARS = 3000
PAGES_PER_FILE = 10
GOAL_PAGES_PER_MIN = 500  # 1,000 pages in under 2 minutes
GOAL_QUERY_MS = 100
GOAL_RECALL = 0.9


def sentences(skip_answers: bool) -> list[str]:
    """The corpus's sentences (HTML tags stripped), optionally without those holding an answer."""
    text = " ".join(re.sub(r"<[^>]+>", " ", p.read_text(encoding="utf-8")) for p in sorted(CORPUS.iterdir()))
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.strip()) > 20]
    if skip_answers:
        found = [s for s in found if not any(q["answer"] in s for q in QUESTIONS)]
    return found


def recombined(rng: random.Random, pool: list[str], chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        paragraph = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 5)))
        out.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(out)


def catalog_quant() -> str:
    """The quantization the app downloads MiniLM in by default."""
    from slmchat.core.models.catalog import load_catalog

    return load_catalog().get("all-minilm-l6-v2").default_quant


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} logical cores"


# --- embedding cost ---------------------------------------------------------------------------
def embedding_cost(count: int, minilm: Path) -> list[dict[str, Any]]:
    import psutil

    from slmchat.core.tasks.embeddings import Embedder

    cores = psutil.cpu_count(logical=False) or 1
    rng = random.Random(5)
    pool = sentences(skip_answers=False)
    texts = [recombined(rng, pool, 900)[:900] for _ in range(count)]
    figures = []
    for threads, workers in ((1, 1), (cores, 1), (1, cores)):
        with Embedder(minilm, n_threads=threads, workers=workers) as embedder:
            tokens = sum(len(embedder.tokens(text)) for text in texts) / count
            embedder.embed(texts[:2])  # warm up
            cpu, start = time.process_time(), time.perf_counter()
            embedder.embed(texts)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - start
        print(f"embedding {count} passages of 900 characters ({tokens:.0f} tokens each), {workers} context(s) of "
              f"{threads} thread(s): {count / wall:.1f} passages/s; CPU {cpu / count * 1000:.0f} ms a passage, "
              f"wall {wall / count * 1000:.0f} ms a passage [{load()}]", flush=True)
        figures.append({"threads": threads, "contexts": workers, "tokens": tokens, "passages_per_s": count / wall,
                        "cpu_ms": cpu / count * 1000, "wall_ms": wall / count * 1000})
    return figures


# --- throughput -------------------------------------------------------------------------------
def throughput(pages: int, minilm: Path, cores: int | None) -> dict[str, Any]:
    from slmchat.core.documents.background import IndexerProcess
    from slmchat.core.documents.index import DocumentIndex
    from slmchat.core.documents.indexer import FileIndexed, Finished
    from slmchat.paths import Paths

    rng = random.Random(1)
    pool = sentences(skip_answers=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pages"
        folder.mkdir()
        for n in range(0, pages, PAGES_PER_FILE):
            count = min(PAGES_PER_FILE, pages - n)
            (folder / f"book_{n // PAGES_PER_FILE:04}.txt").write_text(
                "\n\n".join(recombined(rng, pool, PAGE_CHARS) for _ in range(count)), encoding="utf-8")
        figures: dict[str, Any] = {"pages": pages, "page_chars": PAGE_CHARS, "indexer_cores": cores,
                                   "goal_pages_per_min": GOAL_PAGES_PER_MIN}
        for label, embedder in (("words only (no embedder)", None), ("MiniLM vectors", minilm)):
            paths = Paths.at(Path(tmp) / label.split()[0]).ensure()
            with DocumentIndex(paths.documents_database) as index:
                index.add_roots(index.collection("bench"), [folder])
            start = time.perf_counter()
            searchable = 0.0
            for event in IndexerProcess(paths, embedder, n_threads=cores).run(timeout=7200):
                if isinstance(event, FileIndexed):
                    searchable = time.perf_counter() - start
                last = event
            seconds = time.perf_counter() - start
            assert isinstance(last, Finished), last
            with DocumentIndex(paths.documents_database) as index:
                chunks, vectors = index.counts()["chunks"], index.counts()["vectors"]
            print(f"indexing {pages} pages ({chunks} chunks), {label}: searchable by words after "
                  f"{searchable:.1f} s ({pages / searchable * 60:.0f} pages/min); all done ({vectors} vectors) "
                  f"after {seconds:.1f} s ({pages / seconds * 60:.0f} pages/min, {chunks / seconds:.1f} chunks/s) "
                  f"(goal: 1,000 pages < 120 s) [indexer cores: {cores or 'every core'}; {load()}]", flush=True)
            figures["vectors" if embedder else "words_only"] = {
                "chunks": chunks, "vectors": vectors, "searchable_s": searchable, "seconds": seconds,
                "pages_per_min": pages / seconds * 60}
    return figures


# --- latency and recall ---------------------------------------------------------------------
def _filler_index(index_path: Path, texts: list[str], vectors, model: str) -> None:
    """Chunks under made-up file rows (100 a file), written as the indexer writes them."""
    from slmchat.core.documents.chunk import Chunk
    from slmchat.core.documents.extract import Status
    from slmchat.core.documents.index import DocumentIndex

    with DocumentIndex(index_path) as index:
        collection = index.collection("filler")
        for start in range(0, len(texts), 100):
            path = f"/filler/part_{start // 100:04}.txt"
            index.add_pending(collection, Path(path))
            file_id = index.conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()[0]
            part = texts[start:start + 100]
            index.record(file_id, size=1, mtime_ns=1, sha256="-", status=Status.INDEXED, reason="",
                         text="\n\n".join(part), chunks=[Chunk(t, f"part {i}") for i, t in enumerate(part, start)])
            ids = [r[0] for r in index.conn.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY ordinal",
                                                    (file_id,))]
            index.add_vectors(model, ids, vectors[start:start + 100])


def latency(chunks: int, minilm: Path, threads: int) -> dict[str, Any]:
    import numpy as np

    from slmchat.core.documents.index import DocumentIndex
    from slmchat.core.documents.retrieve import Retriever
    from slmchat.core.process.task_client import TaskClient, TaskKind
    from slmchat.paths import Paths

    rng = random.Random(2)
    pool = sentences(skip_answers=False)
    texts = [recombined(rng, pool, 700)[:900] for _ in range(chunks)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths.at(tmp).ensure()
        with TaskClient(TaskKind.EMBED, minilm, n_threads=threads, paths=paths) as embedder:
            vectors = np.random.default_rng(3).standard_normal((chunks, embedder.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            _filler_index(paths.documents_database, texts, vectors, embedder.model_name)
            with DocumentIndex(paths.documents_database) as index:
                retriever = Retriever(index, embedder)
                start = time.perf_counter()
                retriever.search("warm up: the first query reads the vectors into memory")
                first = time.perf_counter() - start
                total, embed = [], []
                for _ in range(5):
                    for question in QUESTIONS:
                        start = time.perf_counter()
                        embedder.embed([question["question"]])
                        embed.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        retriever.search(question["question"], 5)
                        total.append(time.perf_counter() - start)
    total.sort()
    print(f"query over {chunks} chunks, hybrid search (query embedding included): median "
          f"{statistics.median(total) * 1000:.1f} ms, p95 {total[int(len(total) * 0.95)] * 1000:.1f} ms; "
          f"query embedding alone median {statistics.median(embed) * 1000:.1f} ms; first query "
          f"(reads the vectors) {first * 1000:.0f} ms (goal: < 100 ms) [{load()}]", flush=True)
    return {"chunks": chunks, "median_ms": statistics.median(total) * 1000,
            "p95_ms": total[int(len(total) * 0.95)] * 1000, "embed_median_ms": statistics.median(embed) * 1000,
            "first_ms": first * 1000, "goal_ms": GOAL_QUERY_MS}


def recall(distractors: int, minilm: Path, threads: int) -> dict[str, Any]:
    from slmchat.core.documents.index import DocumentIndex
    from slmchat.core.documents.indexer import index_pending
    from slmchat.core.documents.retrieve import Retriever
    from slmchat.core.process.task_client import TaskClient, TaskKind
    from slmchat.paths import Paths

    rng = random.Random(4)
    pool = sentences(skip_answers=True)
    texts = [recombined(rng, pool, 500)[:900] for _ in range(distractors)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths.at(tmp).ensure()
        with TaskClient(TaskKind.EMBED, minilm, n_threads=threads, paths=paths) as embedder:
            with DocumentIndex(paths.documents_database) as index:
                index.add_roots(index.collection("classics"), [CORPUS])
                index_pending(index, embedder, emit=lambda event: None)
            if texts:  # after indexing: a scan would drop the made-up files, which are not on disk
                _filler_index(paths.documents_database, texts, embedder.embed(texts), embedder.model_name)
            with DocumentIndex(paths.documents_database) as index:
                size = index.counts()["chunks"]
                retriever = Retriever(index, embedder)
                figures: dict[str, Any] = {"chunks": size, "distractors": distractors, "questions": len(QUESTIONS),
                                           "goal": GOAL_RECALL}
                for mode in ("fts", "vector", "hybrid"):
                    found = 0
                    for q in QUESTIONS:
                        hits = retriever.search(q["question"], 5, mode=mode)
                        found += any(q["answer"] in h.text and Path(h.path).name == q["file"] for h in hits)
                    print(f"recall@5 over {size} chunks ({distractors} distractors), {mode:>6}: "
                          f"{found / len(QUESTIONS):.3f} ({found}/{len(QUESTIONS)}) (goal: >= 0.9)", flush=True)
                    figures[mode] = found / len(QUESTIONS)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--distractors", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--indexer-cores", type=int, default=None, help="cores the indexer may use (default: all)")
    parser.add_argument("--cost-chunks", type=int, default=64)
    parser.add_argument("--only", choices=("cost", "throughput", "latency", "recall"))
    parser.add_argument("--quant", default=None, help="the weights converted to this (default: the catalog's default)")
    parser.add_argument("--minilm", type=Path, default=None, help="a MiniLM GGUF (instead of --quant)")
    parser.add_argument("--results", type=Path, help="merge the figures into this JSON file")
    parser.add_argument("--key", default="documents", help="their key in that file (default: documents)")
    args = parser.parse_args()
    import minilm_gguf
    from model_cache import MODEL_CACHE

    common.silence_llama_log()  # llama.cpp's log is not this script's output

    minilm = args.minilm or minilm_gguf.cached_gguf(MODEL_CACHE, args.quant or catalog_quant())
    print(f"documents_bench: MiniLM {minilm.name}, {args.threads} thread(s); this machine is shared with "
          f"other work [{load()}]", flush=True)
    figures: dict[str, Any] = {"minilm": minilm.name, "load_average_start": os.getloadavg()}
    sections = {"cost": lambda: embedding_cost(args.cost_chunks, minilm),
                "recall_corpus": lambda: recall(0, minilm, args.threads),
                "recall": lambda: recall(args.distractors, minilm, args.threads),
                "latency": lambda: latency(args.chunks, minilm, args.threads),
                "throughput": lambda: throughput(args.pages, minilm, args.indexer_cores)}
    for name, run in sections.items():
        if args.only in (None, name.split("_")[0]):
            figures[name] = run()
            common.save_results(args.results, args.key, figures)  # a later section's failure keeps these


if __name__ == "__main__":
    main()
