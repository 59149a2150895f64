"""Conversation store speed with 100k messages: fill, open, list, search, branch. Prints figures.

Goals: listing conversations < 50 ms, a search < 30 ms.
Run: .venv/bin/python benchmarks/store_bench.py [--messages 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slmchat.core.store.export import FORMAT, VERSION, import_conversations  # noqa: E402
from slmchat.core.store.reader import fts_query  # noqa: E402
from slmchat.core.store.store import Store  # noqa: E402

MESSAGES_PER_CONVERSATION = 50
WORDS_PER_MESSAGE = (5, 120)
BATCH = 100  # conversations per import transaction


def vocabulary(rng: np.random.Generator, size: int = 20_000) -> np.ndarray:
    """Made-up words; with Zipf-like use below, a few are everywhere and most are rare."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(["".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(size)])


def synthetic_conversation(rng: np.random.Generator, words: np.ndarray, number: int) -> dict:
    stamp = f"2024-01-01T00:00:00.{number:06d}+00:00"
    messages = []
    for index in range(MESSAGES_PER_CONVERSATION):
        count = int(rng.integers(*WORDS_PER_MESSAGE))
        ranks = np.minimum(rng.zipf(1.3, count), len(words)) - 1
        messages.append(
            {
                "id": index + 1,
                "parent_id": index or None,
                "role": "user" if index % 2 == 0 else "assistant",
                "content": " ".join(words[ranks]),
                "status": "complete",
                "reason": None if index % 2 == 0 else "done",
                "error": "",
                "model": "bench",
                "prompt_tokens": None,
                "completion_tokens": count,
                "ttft": 0.1,
                "tokens_per_s": 30.0,
                "created": stamp,
                "updated": stamp,
            }
        )
    return {
        # uniformly drawn title words: common words then mostly match messages, the slower path
        "title": " ".join(rng.choice(words, 5)),
        "created": stamp,
        "updated": stamp,
        "model": "bench",
        "system_prompt": "",
        "persona": None,
        "settings": None,
        "pinned": number % 97 == 0,
        "deleted_at": None,
        "shown_leaf_id": MESSAGES_PER_CONVERSATION,
        "messages": messages,
    }


def fill(store: Store, total_messages: int, words: np.ndarray, rng: np.random.Generator) -> float:
    conversations = total_messages // MESSAGES_PER_CONVERSATION
    started = time.perf_counter()
    for first in range(0, conversations, BATCH):
        batch = [
            synthetic_conversation(rng, words, n) for n in range(first, min(first + BATCH, conversations))
        ]
        import_conversations(store, {"format": FORMAT, "version": VERSION, "conversations": batch})
    return time.perf_counter() - started


def timed(action: Callable[[], object], repeats: int = 15) -> tuple[float, object]:
    """Median milliseconds over `repeats` runs (after one warm-up), and the last result."""
    result = action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the database in DIR and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="store-bench-"))
    path = folder / "bench.db"
    if path.exists():
        sys.exit(f"{path} exists; give an empty --keep folder")

    rng = np.random.default_rng(42)
    words = vocabulary(rng)  # words[0] is the most used, words[-1] the least
    store = Store(path)
    fill_s = fill(store, args.messages, words, rng)
    store.close()
    size_mb = path.stat().st_size / 1e6
    print(
        f"filled {args.messages} messages in {fill_s:.1f} s ({args.messages / fill_s:.0f}/s); "
        f"file {size_mb:.0f} MB"
    )

    started = time.perf_counter()
    store = Store(path)
    print(f"open (integrity check + migrations check): {(time.perf_counter() - started) * 1000:.0f} ms")

    conversations = store.db.execute("SELECT count(*) FROM conversations").fetchone()[0]
    ms, listed = timed(store.conversations)
    print(f"list all {len(listed)} of {conversations} conversations: {ms:.1f} ms   (goal < 50 ms)")
    ms, _ = timed(lambda: store.conversations(limit=100))
    print(f"list first 100 conversations: {ms:.1f} ms")

    queries = [
        ("most common word", str(words[0])),
        ("frequent word", str(words[20])),
        ("uncommon word", str(words[300])),
        ("rare word", str(words[5000])),
        ("two words", f"{words[20]} {words[300]}"),
        ("prefix as typed", str(words[300])[:3]),
        ("first letter as typed", str(words[300])[:1]),
        ("absent word", "zzzzzzzzzzzz"),
    ]
    for label, query in queries:
        in_messages = store.db.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", [fts_query(query)]
        ).fetchone()[0]
        ms, hits = timed(lambda q=query: store.search(q, limit=50))
        titles = sum(hit.message_id is None for hit in hits)
        print(
            f"search {label} {query!r} (in {in_messages} messages): {ms:.1f} ms, "
            f"{titles} title + {len(hits) - titles} message hits   (goal < 30 ms)"
        )
    rare = str(words[5000])

    ms, branch = timed(lambda: store.branch(listed[0].id))
    print(f"branch of a {len(branch)}-message conversation: {ms:.1f} ms")
    with store.reader() as reader:
        ms, _ = timed(lambda: reader.search(rare, limit=50))
        print(f"search rare word on a read-only worker connection: {ms:.1f} ms")
    store.close()
    if args.keep is None:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
