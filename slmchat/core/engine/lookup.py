"""Draft tokens for speculative decoding from the conversation itself (prompt lookup), no second model.

Replies often repeat their input: a rewrite, a summary quoting its text, an edited piece of code.
When the last few tokens of prompt + reply occurred before, what followed them then is a good guess
for what follows now. The engine verifies such a guess in one llama.cpp batch and keeps the part the
model agrees with (engine.py); this module only guesses, and decides when guessing is worth it.
On a CPU a verify batch costs more than a single decode, so in free prose, where guesses fail, a
`Throttle` pauses drafting for longer and longer stretches, and lets it try again later.
Pure Python on token ids: no llama.cpp here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class NgramIndex:
    """The token history, indexed so that a continuation of its last n tokens is found in O(1).

    For each n in `min_ngram`..`max_ngram`, every n-gram of the history maps to where its latest
    earlier occurrence was followed (the position after it). The history's own tail is indexed only
    once a token follows it, so a lookup of the tail finds an earlier occurrence, never itself.
    """

    def __init__(self, tokens: Iterable[int] = (), *, min_ngram: int = 1, max_ngram: int = 3) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"n-gram sizes must satisfy 1 <= {min_ngram} <= {max_ngram}")
        self.min_ngram, self.max_ngram = min_ngram, max_ngram
        self.tokens: list[int] = []
        self._follows: dict[tuple[int, ...], int] = {}  # n-grams of all sizes share one dict: keys differ in length
        self.extend(tokens)

    def append(self, token: int) -> None:
        tokens = self.tokens
        end = len(tokens)  # the n-grams ending here are now followed by `token`, at position `end`
        for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
            self._follows[tuple(tokens[end - n:end])] = end
        tokens.append(token)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(token)

    def continuation(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the longest earlier occurrence of the history's tail
        (its last max_ngram tokens, else fewer down to min_ngram); [] when there is none."""
        tokens = self.tokens
        if limit <= 0:
            return []
        for n in range(min(self.max_ngram, len(tokens)), self.min_ngram - 1, -1):
            start = self._follows.get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start:start + limit]
        return []


class Throttle:
    """Switches drafting off while drafts keep failing, and back on later.

    After each verified draft, when the last `window` drafts together had fewer than `min_rate`
    of their tokens accepted, drafting pauses for `pause` tokens; each further failed trial doubles
    the pause (up to `max_pause`), a good window resets it. In free prose that leaves a few short
    trials per reply; in a rewrite drafting stays on.
    """

    def __init__(self, *, window: int = 3, min_rate: float = 0.5, pause: int = 32, max_pause: int = 512) -> None:
        self.min_rate, self.base_pause, self.max_pause = min_rate, pause, max_pause
        self._recent: deque[tuple[int, int]] = deque(maxlen=window)
        self._pause = pause  # the length of the next pause
        self._paused_for = 0  # tokens left before drafting is tried again

    @property
    def drafting(self) -> bool:
        return self._paused_for == 0

    def step(self) -> None:
        """One token was generated."""
        if self._paused_for:
            self._paused_for -= 1

    def record(self, drafted: int, accepted: int) -> None:
        """A draft of `drafted` tokens was verified and `accepted` of them kept."""
        self._recent.append((drafted, accepted))
        if len(self._recent) < (self._recent.maxlen or 1):
            return
        total = sum(d for d, _ in self._recent)
        kept = sum(a for _, a in self._recent)
        if kept >= self.min_rate * total:
            self._pause = self.base_pause
            return
        self._paused_for = self._pause
        self._pause = min(2 * self._pause, self.max_pause)
        self._recent.clear()  # after the pause, a fresh trial


class PromptLookup:
    """Drafts for one reply: the n-gram index over prompt + reply so far, gated by a Throttle.

    A draft is as long as the last one earned: twice as long after one accepted whole (up to
    `max_draft`), one more than its accepted part after a miss (at least `min_draft`); the first
    is `first_draft` long. On a CPU each drafted token costs about half a decode (measured on
    SmolLM2-135M, one thread), so a long draft pays only while the model follows the text.
    Matches of a single token are too often chance: the index looks for two or three.
    """

    def __init__(self, history: Iterable[int], *, min_draft: int = 2, first_draft: int = 4, max_draft: int = 10,
                 index: NgramIndex | None = None, throttle: Throttle | None = None) -> None:
        self.index = index if index is not None else NgramIndex(min_ngram=2)
        self.index.extend(history)
        self.throttle = throttle or Throttle()
        self.min_draft, self.max_draft = min_draft, max_draft
        self.length = first_draft  # of the next draft

    def append(self, token: int) -> None:
        """A token of the reply, in order (accepted drafts included)."""
        self.index.append(token)
        self.throttle.step()

    def draft(self, limit: int) -> list[int]:
        """Tokens guessed to follow the history (at most `limit` and the length earned); [] while paused."""
        if not self.throttle.drafting:
            return []
        return self.index.continuation(min(limit, self.length))

    def record(self, drafted: int, accepted: int) -> None:
        self.throttle.record(drafted, accepted)
        grown = 2 * self.length if accepted == drafted else accepted + 1
        self.length = max(self.min_draft, min(self.max_draft, grown))
