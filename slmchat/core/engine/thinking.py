"""Thinking models: the markers a model reasons between, read from its chat template, how the
template turns thinking on and off, and where a reply stands in its thinking block as it streams.

Qwen3, SmolLM3 and the DeepSeek-R1 distills name their markers in the template (to strip old
reasoning, to write an empty block when thinking is off, or to open the block in the prompt).
Phi-4-mini-reasoning's template never names them although the model writes them: it is known by
its template's fixed system line. A template "has a switch" when rendering it with
`enable_thinking` false changes the prompt (Qwen3, SmolLM3); without one the model always thinks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from slmchat.core.engine.templates import ChatFormat, TemplateFailed
from slmchat.core.generation import ChatMessage, Role, ThinkingMarkers, split_reply

THINK = ThinkingMarkers("<think>", "</think>")
# Markers a template may name, in the order they are looked for.
KNOWN_MARKERS = (THINK,)
# Templates whose model thinks without the template saying so: a phrase only that template has.
_SILENT_TEMPLATES = (
    ("Your name is Phi, an AI math expert developed by Microsoft.", THINK),  # Phi-4-mini-reasoning
)
_SAMPLE = [ChatMessage(Role.USER, "Hello")]


@dataclass(frozen=True)
class ThinkingStyle:
    """How one model thinks: its markers and whether its template can switch thinking."""

    markers: ThinkingMarkers
    switch: bool  # `enable_thinking` changes the prompt: GenerationSettings.thinking "on"/"off" work


def detect(chat_format: ChatFormat) -> ThinkingStyle | None:
    """The model's thinking style from its chat template; None for a model that does not think."""
    text = chat_format.template_text
    markers = next((m for m in KNOWN_MARKERS if m.open in text and m.close in text), None)
    if markers is None:
        markers = next((m for phrase, m in _SILENT_TEMPLATES if phrase in text), None)
    if markers is None:
        return None
    try:
        switch = (chat_format.render(_SAMPLE, thinking=True)
                  != chat_format.render(_SAMPLE, thinking=False))
    except TemplateFailed:
        switch = False
    return ThinkingStyle(markers, switch)


def template_switch(style: ThinkingStyle | None, setting: str) -> bool | None:
    """The `enable_thinking` value to render with for GenerationSettings.thinking `setting`;
    None (leave it undefined: the template's default) for "auto" and for models without a switch."""
    if style is None or not style.switch:
        return None
    return {"on": True, "off": False}.get(setting)


def prompt_head(prompt: str, markers: ThinkingMarkers) -> str:
    """The thinking block the prompt itself opens at its end (DeepSeek-R1 distills end it with
    "<think>\\n"): from the open marker on, the reply's first piece; "" when it opens none."""
    if not prompt.rstrip().endswith(markers.open):
        return ""
    return prompt[prompt.rstrip().rfind(markers.open):]


def prompt_closes_block(prompt: str, markers: ThinkingMarkers) -> bool:
    """True when the prompt ends with an empty, closed thinking block (thinking switched off:
    Qwen3's "<think>\\n\\n</think>\\n\\n"): the reply is all answer."""
    tail = prompt.rstrip()
    if not tail.endswith(markers.close):
        return False
    return tail[:-len(markers.close)].rstrip().endswith(markers.open)


def answer_only(message: ChatMessage, markers: ThinkingMarkers) -> ChatMessage:
    """An earlier assistant turn as later prompts carry it: its answer, without its thinking."""
    role = message.role.value if isinstance(message.role, Role) else str(message.role)
    if role != Role.ASSISTANT.value or markers.open not in message.content:
        return message
    return ChatMessage(message.role, split_reply(message.content, markers).answer)


class Phase(enum.Enum):
    BEFORE = "before"  # nothing but whitespace yet: the model may still open a block
    INSIDE = "inside"  # thinking
    AFTER = "after"  # answering (the block closed, or the reply began without one)


class ThinkingTracker:
    """Follows a reply token by token: the phase it is in and the tokens it spent thinking.

    Works on the decoded text, so markers split over several tokens are found too. The token
    that completes the open marker is not counted; every later one up to and including the one
    that completes the close marker is.
    """

    def __init__(self, markers: ThinkingMarkers, budget: int, *, closed: bool = False) -> None:
        self.markers = markers
        self.budget = budget
        self.phase = Phase.AFTER if closed else Phase.BEFORE
        self.tokens = 0
        self._text = ""  # BEFORE: the reply so far; INSIDE: the last characters, to find the close marker

    def feed(self, text: str, *, token: bool = True) -> None:
        """One token's text (or, with `token=False`, text that is no generated token: the
        prompt's opening of the block)."""
        if self.phase is Phase.BEFORE:
            self._text += text
            start = self._text.lstrip()
            if start.startswith(self.markers.open):
                self.phase = Phase.INSIDE
                self._text = start[len(self.markers.open):]
                self._find_close()
            elif not self.markers.open.startswith(start):
                self.phase = Phase.AFTER
        elif self.phase is Phase.INSIDE:
            if token:
                self.tokens += 1
            self._text = self._text[-len(self.markers.close):] + text
            self._find_close()

    def _find_close(self) -> None:
        if self.markers.close in self._text:
            self.phase = Phase.AFTER
            self._text = ""

    @property
    def over_budget(self) -> bool:
        """Still thinking with the whole budget spent: time for the engine to close the block."""
        return self.phase is Phase.INSIDE and 0 < self.budget <= self.tokens

    def close(self) -> str:
        """The text that closes the block (as Qwen3 and DeepSeek-R1 write it); the tracker
        moves on to the answer."""
        self.phase, self._text = Phase.AFTER, ""
        return f"\n{self.markers.close}\n\n"
