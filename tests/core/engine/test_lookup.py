"""Prompt lookup drafting (engine/lookup.py): n-gram continuations of the history, and the throttle
that switches drafting off while drafts fail and on again later. Pure Python on token ids."""

from __future__ import annotations

import pytest

from slmchat.core.engine.lookup import NgramIndex, PromptLookup, Throttle


def test_the_longest_matching_ngram_decides_the_continuation() -> None:
    # "5 1 2" occurred once, followed by 3 4; the bigram "1 2" more recently, followed by 9.
    index = NgramIndex([5, 1, 2, 3, 4, 0, 1, 2, 9, 8, 5, 1, 2])
    assert index.continuation(3) == [3, 4, 0]


def test_without_a_long_match_shorter_ngrams_are_tried_down_to_one_token() -> None:
    assert NgramIndex([7, 1, 2, 3, 8, 2]).continuation(2) == [3, 8]  # unigram "2"
    assert NgramIndex([7, 1, 2, 3, 8, 9]).continuation(4) == []  # "9" never came before


def test_the_latest_earlier_occurrence_is_used_never_the_tail_itself() -> None:
    assert NgramIndex([1, 2, 10, 1, 2, 20, 1, 2]).continuation(1) == [20]
    assert NgramIndex([1, 2]).continuation(4) == []


def test_the_draft_stops_at_the_limit_and_at_the_end_of_the_history() -> None:
    index = NgramIndex([4, 5, 6, 7, 8, 9, 4, 5])
    assert index.continuation(2) == [6, 7]
    assert index.continuation(100) == [6, 7, 8, 9, 4, 5]
    assert index.continuation(0) == []


def test_tokens_appended_one_by_one_are_indexed_like_a_history_given_at_once() -> None:
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9]
    grown = NgramIndex(tokens[:5])
    for i, token in enumerate(tokens[5:], start=5):
        grown.append(token)
        assert grown.continuation(5) == NgramIndex(tokens[:i + 1]).continuation(5)


def test_a_minimum_ngram_size_ignores_shorter_matches() -> None:
    history = [7, 1, 2, 3, 8, 2]
    assert NgramIndex(history, min_ngram=2).continuation(2) == []
    with pytest.raises(ValueError):
        NgramIndex(min_ngram=0)


def test_drafting_pauses_after_failed_drafts_and_comes_back_after_the_pause() -> None:
    throttle = Throttle(window=3, min_rate=0.5, pause=5, max_pause=40)
    for _ in range(3):
        assert throttle.drafting
        throttle.record(drafted=8, accepted=1)
    assert not throttle.drafting
    for _ in range(4):
        throttle.step()
        assert not throttle.drafting
    throttle.step()
    assert throttle.drafting


def test_each_failed_trial_doubles_the_pause_up_to_its_cap_and_success_resets_it() -> None:
    throttle = Throttle(window=2, min_rate=0.5, pause=4, max_pause=10)

    def fail_trial() -> int:
        throttle.record(6, 0)
        throttle.record(6, 0)
        paused = 0
        while not throttle.drafting:
            throttle.step()
            paused += 1
        return paused

    assert [fail_trial() for _ in range(4)] == [4, 8, 10, 10]
    throttle.record(6, 6)
    throttle.record(6, 5)
    assert throttle.drafting
    assert fail_trial() == 4


def test_good_drafts_keep_drafting_on() -> None:
    throttle = Throttle(window=4, min_rate=0.35, pause=16)
    for accepted in [8, 2, 1, 6, 8, 3, 2, 8]:  # 38 of 64: above the rate over every window
        throttle.record(8, accepted)
        assert throttle.drafting


def test_prompt_lookup_drafts_the_repeated_text_and_is_silent_while_paused() -> None:
    prompt = [10, 11, 12, 13, 14, 15, 16, 17, 99, 10, 11]
    lookup = PromptLookup(prompt, first_draft=4, throttle=Throttle(window=1, min_rate=0.5, pause=3))
    assert lookup.draft(100) == [12, 13, 14, 15]  # as long as the first draft may be
    assert lookup.draft(2) == [12, 13]  # and no longer than the room the caller has
    lookup.append(12)
    assert lookup.draft(100) == [13, 14, 15, 16]
    lookup.record(4, 0)  # the model disagreed
    assert lookup.draft(100) == []
    for token in (10, 11, 12):
        lookup.append(token)
    assert lookup.draft(100) == [10, 11]  # "10 11 12" was last followed by "10 11"; a shorter draft now


def test_prompt_lookup_ignores_single_token_matches() -> None:
    assert PromptLookup([5, 6, 7, 8, 6]).draft(10) == []
    assert PromptLookup([5, 6, 7, 8, 5, 6]).draft(10) == [7, 8, 5, 6]


def test_drafts_grow_while_accepted_whole_and_shrink_to_what_was_accepted() -> None:
    lookup = PromptLookup([], min_draft=2, first_draft=2, max_draft=8)
    lengths = []
    for drafted, accepted in [(2, 2), (4, 4), (8, 8), (8, 3), (4, 0), (2, 2)]:
        lookup.record(drafted, accepted)
        lengths.append(lookup.length)
    assert lengths == [4, 8, 8, 4, 2, 4]
