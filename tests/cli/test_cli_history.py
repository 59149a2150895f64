"""`slmchat-cli history`: list, show, search, export, import — checked against the SQLite rows."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from slmchat.cli import EXIT_USER_ERROR, main
from slmchat.cli.terminal import write_out
from slmchat.core.generation import GenerationStats
from slmchat.core.store.store import Store
from slmchat.paths import Paths

ESCAPES = ("\x1b", "\x07", "\x9b")


@pytest.fixture
def database(slmchat_home: Path) -> Path:
    """Two stored conversations, one of them branched, in the test's data folder."""
    path = Paths.at(slmchat_home).ensure().database
    with Store(path) as store:
        volcano = store.new_conversation(model="smol")
        store.add_user_message(volcano.id, "Why do volcanoes erupt?")
        first = store.start_reply(volcano.id, model="smol")
        store.finish_reply(first.id, "Pressure from magma builds up.", GenerationStats())
        second = store.regenerate(first.id, model="smol")
        store.finish_reply(second.id, "Gas in the magma expands.", GenerationStats())
        garden = store.new_conversation()
        store.add_user_message(garden.id, "When should I plant tulips?")
    return path


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_list_shows_conversations_most_recent_first(database: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["history", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    newest_first = rows(database, "SELECT id, title FROM conversations ORDER BY updated DESC")
    assert [title for _, title in newest_first] == ["When should I plant tulips?", "Why do volcanoes erupt?"]
    for line, (conversation_id, title) in zip(lines, newest_first, strict=True):
        assert int(line.split()[0]) == conversation_id and line.endswith(title)


def test_show_prints_the_shown_branch_or_the_tree(database: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["history", "show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "Gas in the magma expands." in shown and "Pressure" not in shown
    assert main(["history", "show", "1", "--tree"]) == 0
    assert "Pressure from magma builds up." in capsys.readouterr().out


def test_search_prints_highlighted_snippets_and_fails_when_nothing_matches(
    database: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["history", "search", "magma"]) == 0
    out = capsys.readouterr().out
    assert out.count("[magma]") == 2 and "1:2" in out and "1:3" in out
    assert main(["history", "search", "nonexistentword"]) == 1


def test_export_json_then_import_adds_a_copy(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target = tmp_path / "volcano.json"
    assert main(["history", "export", "1", "--format", "json", "--tree", "--output", str(target)]) == 0
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert [m["content"] for m in exported["conversations"][0]["messages"]] == [
        "Why do volcanoes erupt?",
        "Pressure from magma builds up.",
        "Gas in the magma expands.",
    ]
    assert main(["history", "import", str(target)]) == 0
    assert "imported 1 conversation(s): 3" in capsys.readouterr().out
    assert rows(
        database, "SELECT role, content, status FROM messages WHERE conversation_id = 3 ORDER BY id"
    ) == [
        ("user", "Why do volcanoes erupt?", "complete"),
        ("assistant", "Pressure from magma builds up.", "complete"),
        ("assistant", "Gas in the magma expands.", "complete"),
    ]


def test_export_markdown_to_stdout_and_everything_as_json(
    database: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["history", "export", "2", "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("# When should I plant tulips?\n")
    assert main(["history", "export", "--all"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert len(everything["conversations"]) == rows(database, "SELECT count(*) FROM conversations")[0][0]


def test_user_errors_are_one_clear_line(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["history", "show", "99"]) == EXIT_USER_ERROR
    assert capsys.readouterr().err.strip() == "slmchat: There is no conversation number 99."
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello")
    assert main(["history", "import", str(not_json)]) == EXIT_USER_ERROR
    assert "cannot be read as a slmchat export" in capsys.readouterr().err
    assert rows(database, "SELECT count(*) FROM conversations") == [(2,)]


def test_a_damaged_database_is_reported_and_replaced(
    slmchat_home: Path, capsys: pytest.CaptureFixture
) -> None:
    path = Paths.at(slmchat_home).ensure().database
    path.write_bytes(b"this was never a database" * 100)
    assert main(["history", "list"]) == 0
    err = capsys.readouterr().err
    assert "damaged" in err and ".corrupt-" in err
    assert rows(path, "SELECT count(*) FROM conversations") == [(0,)]


def test_stored_escape_codes_never_reach_the_terminal(
    slmchat_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A pasted message or a model's reply can hold escape sequences: shown, they are dropped;
    exported to a file or a pipe, they are kept exactly."""
    with Store(Paths.at(slmchat_home).ensure().database) as store:
        conversation = store.new_conversation()
        store.add_user_message(conversation.id, "Clear \x1b[2Jthe screen?")
        reply = store.start_reply(conversation.id)
        store.finish_reply(reply.id, "Retitled\x1b]0;pwned\x07 and \x9b31mred", GenerationStats())
    for command in (["history", "list"], ["history", "show", "1"], ["history", "search", "screen"]):
        assert main(command) == 0
        out = capsys.readouterr().out
        assert "screen" in out and not any(code in out for code in ESCAPES), command
    target = tmp_path / "exact.md"
    assert main(["history", "export", "1", "--output", str(target)]) == 0
    exported = target.read_text(encoding="utf-8")
    assert "Retitled\x1b]0;pwned\x07 and \x9b31mred" in exported
    assert main(["history", "export", "1"]) == 0  # stdout is a pipe here
    assert capsys.readouterr().out == exported
    terminal = TerminalStream()
    write_out(terminal, exported)
    assert "Retitled]0;pwned and 31mred" in terminal.getvalue()
    assert not any(code in terminal.getvalue() for code in ESCAPES)


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_export_errors_are_one_clear_line(database: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["history", "export", "1", "--output", str(tmp_path / "no" / "such" / "folder.md")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("slmchat: Cannot write ") and "No such file or directory" in err and err.count("\n") == 1
    assert main(["history", "export", "1", "--output", str(tmp_path)]) == 1  # a folder
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["history", "export", "--all", "--format", "md"]) == 1
    assert capsys.readouterr().err == "slmchat: --all exports every conversation as JSON only; leave out --format md.\n"


def test_search_labels_a_hit_found_only_in_a_replys_thinking_as_thinking(
    slmchat_home: Path, capsys: pytest.CaptureFixture
) -> None:
    path = Paths.at(slmchat_home).ensure().database
    with Store(path) as store:
        chat = store.new_conversation(title="Aardvarks", model="qwen3")
        store.add_user_message(chat.id, "What do aardvarks eat?")
        reply = store.start_reply(chat.id, model="qwen3")
        store.finish_reply(reply.id, "Mostly ants.", GenerationStats(), thinking="Termites come to mind first.")
    assert main(["history", "search", "termites"]) == 0
    assert f"{chat.id}:{reply.id}  thinking  Aardvarks: [Termites]" in capsys.readouterr().out
    assert main(["history", "search", "ants"]) == 0
    assert "assistant" in capsys.readouterr().out
