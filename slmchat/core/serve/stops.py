"""Stop sequences (`stop` in a request): the reply ends where one of them first appears, and
the stop text itself is never sent.

The model writes text in pieces of a token or so, and a stop string may be split across them
("\\n\\nUs" then "er:"), so the end of what came so far that could still be the start of a stop
string is held back until the next piece settles it. Pieces not at risk go out at once.
"""

from __future__ import annotations

MAX_STOPS = 4  # OpenAI's limit


class StopScanner:
    """Feed it the model's pieces; it returns what may be sent, and says when a stop was met."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that may be sent now. Once a stop string appears, `stopped` is true and the
        text before it is the last returned."""
        text = self._held + piece
        found = [index for index in (text.find(stop) for stop in self._stops) if index >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return text[:min(found)]
        keep = self._at_risk(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """At the end of the reply, what was held back (no stop string came after all)."""
        held, self._held = self._held, ""
        return held

    def _at_risk(self, text: str) -> int:
        """The length of the longest end of `text` that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-size:]):
                    longest = size
                    break
        return longest
