"""Which model a command uses: `--model` as a file or a library id, checked before any process starts."""

from __future__ import annotations

from pathlib import Path

from slmchat.cli.terminal import for_terminal
from slmchat.core.errors import ModelFileMissing, WrongModelRole
from slmchat.core.gguf.check import GGUFInfo, check_gguf
from slmchat.core.models.catalog import ModelRole, load_catalog
from slmchat.core.models.library import ModelLibrary
from slmchat.core.store.records import Conversation
from slmchat.core.tasks.capabilities import Capability, capabilities
from slmchat.paths import Paths, starter_model

# What a model is, by the first role it has (in this order), for the refusal line.
_WHAT_IT_IS = (
    (Capability.CHAT, "a chat model"),
    (Capability.TRANSLATE, "a translation and summary model"),
    (Capability.EMBED, "an embedding model (for search by meaning)"),
    (Capability.CLASSIFY, "a classifier"),
    (Capability.COMPLETE, "a text-completion model"),
)
_DOING = {
    Capability.CHAT: "chat",
    Capability.COMPLETE: "continue text",
    Capability.TRANSLATE: "translate",
    Capability.SUMMARIZE: "summarize",
    Capability.EMBED: "embed text",
    Capability.CLASSIFY: "classify text",
}
_CATALOG_ROLE = {
    Capability.CHAT: ModelRole.CHAT,
    Capability.COMPLETE: ModelRole.COMPLETION,
    Capability.TRANSLATE: ModelRole.TRANSLATE_SUMMARIZE,
    Capability.SUMMARIZE: ModelRole.TRANSLATE_SUMMARIZE,
    Capability.EMBED: ModelRole.EMBED,
    Capability.CLASSIFY: ModelRole.CLASSIFY,
}


def library_paths(paths: Paths) -> dict[str, Path]:
    """Library id → resolved file, the starter model included."""
    return {model.id: model.path.resolve() for model in ModelLibrary(paths).list()}


def model_path(given: str, known: dict[str, Path]) -> Path:
    """`given` as a file when one exists there, else as a library id; an unknown name stays a
    path (whoever opens it says it is missing)."""
    path = Path(given).expanduser()
    if not path.exists() and given in known:
        path = known[given]
    return path.resolve()


def choose_model(given: str | None, conversation: Conversation | None, paths: Paths) -> tuple[Path, str]:
    """The file to load and how to record it: the library id when it is in the library (as the
    GUI records it), else its absolute path.

    `given` is a path or a library id. Without it, a conversation continues with the model it
    was held with, and a new one starts with the starter model.
    """
    known = library_paths(paths)
    if given is not None:
        path = model_path(given, known)
    elif conversation is not None and conversation.model:
        path = known.get(conversation.model) or Path(conversation.model)
        if not path.is_file():
            raise ModelFileMissing(
                f'Conversation {conversation.id} was held with "{for_terminal(conversation.model)}", which '
                "is not available any more. Pass --model PATH to continue it with another model.")
    else:
        starter = starter_model()
        if starter is None:
            raise ModelFileMissing("No model given, and the starter model is not installed. Pass --model PATH.")
        path = starter
    path = path.resolve()
    by_path = {model_path: model_id for model_id, model_path in known.items()}
    return path, by_path.get(path, str(path))


def able_model(given: str, capability: Capability, paths: Paths) -> GGUFInfo:
    """The checked facts of `given` (a file or a library id), refused in one line when its
    metadata says it cannot play `capability` — so a wrong model never costs a process start.

    Raises ModelFileMissing for a name that is neither, the GGUF check error for a bad file,
    WrongModelRole (saying which model to use instead) for a model of another role.
    """
    path = model_path(given, library_paths(paths))
    if not path.is_file():
        raise ModelFileMissing(f'"{given}" is neither a GGUF file nor the id of a model in your library. '
                               'Run "slmchat-cli models" to see the ids.')
    info = check_gguf(path)
    able = capabilities(info)
    if capability not in able:
        what = next((text for role, text in _WHAT_IT_IS if role in able), "a model slmchat has no role for")
        raise WrongModelRole(f"{info.name} is {what}; it cannot {_DOING[capability]}. "
                             f"Use {suggested_model(capability)}.",
                             detail=f"{path}: architecture {info.architecture}, can {sorted(c.value for c in able)}")
    return info


def suggested_model(capability: Capability) -> str:
    """A catalog model that can play `capability` and how to get it, to end a sentence with:
    'a T5 model such as flan-t5-base (slmchat-cli download flan-t5-base)'."""
    entries = [e for e in load_catalog().by_role(_CATALOG_ROLE[capability]) if e.supported]
    if not entries:
        return f"a model that can {_DOING[capability]}"
    entry = next((e for e in entries if e.default_file is not None), entries[0])
    if entry.default_file is not None:
        how = f"slmchat-cli download {entry.id}"
    else:
        source = f"convert {entry.convert_from} to GGUF, then " if entry.convert_from else ""
        how = f"not offered as a download yet: {source}add it with slmchat-cli import"
    return f"a {entry.family} model such as {entry.id} ({how})"
