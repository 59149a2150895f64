"""Stop sequences over a stream of pieces: the text before the first stop string is sent, the
stop string never is, even when it comes split across pieces, and text that only looked like
the start of one is sent after all."""

from __future__ import annotations

import pytest

from slmchat.core.serve.stops import StopScanner


def scan(stops: tuple[str, ...], pieces: list[str]) -> tuple[list[str], bool]:
    """What the scanner lets out, piece by piece, until it stops or the pieces end."""
    scanner = StopScanner(stops)
    sent = []
    for piece in pieces:
        sent.append(scanner.feed(piece))
        if scanner.stopped:
            return sent, True
    sent.append(scanner.flush())
    return sent, False


def test_a_stop_string_inside_one_piece_ends_the_text_just_before_it() -> None:
    assert scan(("User:",), ["Hello", " there. User: more"]) == (["Hello", " there. "], True)


@pytest.mark.parametrize("pieces", [["Paris.\n", "\nUs", "er: no"], ["Paris.\n\n", "U", "s", "e", "r", ":"],
                                    ["Paris.", "\n", "\n", "User:"]])
def test_a_stop_string_split_across_pieces_still_stops_and_none_of_it_is_sent(pieces) -> None:
    sent, stopped = scan(("\n\nUser:",), pieces)
    assert stopped and "".join(sent) == "Paris."


def test_text_held_back_as_a_possible_stop_is_sent_once_it_is_not_one() -> None:
    sent, stopped = scan(("END",), ["The E", "N", "D", "ING"])
    assert stopped and "".join(sent) == "The "
    sent, stopped = scan(("END",), ["The E", "N", "ding"])
    assert not stopped and "".join(sent) == "The ENding" and sent[:2] == ["The ", ""]


def test_text_at_risk_is_held_back_only_as_long_as_it_could_begin_a_stop() -> None:
    scanner = StopScanner(("abc",))
    assert scanner.feed("xxab") == "xx"
    assert scanner.feed("x") == "abx"
    assert scanner.flush() == ""


def test_of_several_stop_strings_the_earliest_in_the_text_wins() -> None:
    assert scan(("world", "o"), ["Hello world"]) == (["Hell"], True)


def test_without_stop_strings_every_piece_goes_out_unchanged() -> None:
    assert scan((), ["a", "b"]) == (["a", "b", ""], False)
