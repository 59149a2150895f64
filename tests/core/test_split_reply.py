"""split_reply: a thinking model's raw reply cut into thinking and answer, also while it streams."""

from __future__ import annotations

from slmchat.core.generation import SplitReply, ThinkingMarkers, join_reply, split_reply

THINK = ThinkingMarkers("<think>", "</think>")


def test_a_finished_reply_splits_into_its_thinking_and_its_answer() -> None:
    assert split_reply("<think>\nSo, 2.\n</think>\n\nTwo.", THINK) == SplitReply("So, 2.", "Two.", False)


def test_a_model_without_markers_answers_with_all_its_text() -> None:
    assert split_reply("<think>x</think>y", None) == SplitReply("", "<think>x</think>y", False)


def test_the_open_marker_still_arriving_is_neither_thinking_nor_answer() -> None:
    for partial in ("<", "<thi", "\n<think"):
        assert split_reply(partial, THINK) == SplitReply("", "", False), partial
    assert split_reply("<b>", THINK) == SplitReply("", "<b>", False)  # not the marker after all


def test_the_close_marker_still_arriving_is_not_shown_as_thinking() -> None:
    for partial in ("<think>\nSo, 2.\n<", "<think>\nSo, 2.\n</thi", "<think>\nSo, 2.\n</think"):
        assert split_reply(partial, THINK) == SplitReply("So, 2.", "", True), partial
    assert split_reply("<think>a < b", THINK) == SplitReply("a < b", "", True)


def test_parts_stored_apart_join_back_into_a_reply_that_splits_into_the_same_parts() -> None:
    for parts in (SplitReply("So, 2.", "Two.", False), SplitReply("So,", "", True), SplitReply("", "Two.", False)):
        assert split_reply(join_reply(parts, THINK), THINK) == parts
    assert join_reply(SplitReply("", "Two.", False), None) == "Two."
