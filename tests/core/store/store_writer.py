"""Crash-test helper: records a user message, then streams a reply into the store until killed.

Run as `python tests/store_writer.py DB PIECES PIECE_DELAY_S CHECKPOINT_INTERVAL_S`. It writes
through the real Store and Checkpointer, and tells its parent on stdout (one flushed line each,
JSON-encoded text) what it is about to save and what it has saved:

    conversation <id>         the conversation exists
    user <id> <json text>     the user message is committed
    reply <id>                the streaming reply exists (empty, saved)
    pending <json text>       the text the next append may save
    saved <json text>         that append committed this text
    finished                  the reply was finalized (the parent should kill before this)

The pieces are simulated at a steady pace: the store is under test here, not the model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from slmchat.core.generation import GenerationStats
from slmchat.core.store.recording import Checkpointer
from slmchat.core.store.store import Store

USER_TEXT = "Please count slowly for me, one word at a time."


def piece(number: int) -> str:
    return f"word{number} "


def say(*parts: object) -> None:
    print(*parts, flush=True)


def main(db_path: str, pieces: int, delay_s: float, interval_s: float) -> None:
    store = Store(Path(db_path))
    conversation = store.new_conversation(model="simulated")
    say("conversation", conversation.id)
    user = store.add_user_message(conversation.id, USER_TEXT)
    say("user", user.id, json.dumps(user.content))
    reply = store.start_reply(conversation.id, model="simulated")
    say("reply", reply.id)
    checkpointer = Checkpointer(store, reply.id, interval_s=interval_s)
    for number in range(pieces):
        say("pending", json.dumps(checkpointer.text + piece(number)))
        if checkpointer.append(piece(number)):
            say("saved", json.dumps(checkpointer.text))
        time.sleep(delay_s)
    checkpointer.finish(GenerationStats(completion_tokens=pieces))
    say("finished")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
