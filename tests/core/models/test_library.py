"""The model library: what is on disk, importing, removing, and tidying leftovers of downloads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import slmchat.core.models.library as library_module
from slmchat.core.errors import (
    CannotRemoveModel,
    DownloadAlreadyRunning,
    ModelFileMissing,
    NotAGGUF,
    UnknownModel,
    WrongModel,
)
from slmchat.core.models.library import ModelLibrary, ModelSource, PartialState
from slmchat.paths import Paths, starter_model

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def library(slmchat_home: Path) -> ModelLibrary:
    return ModelLibrary(Paths.at(slmchat_home).ensure())


@pytest.fixture
def user_copy(tmp_path: Path, smollm2_path: Path) -> Path:
    """A GGUF the user keeps in a folder of their own."""
    folder = tmp_path / "my-models"
    folder.mkdir()
    return Path(shutil.copy(smollm2_path, folder / "My Model.gguf"))


def finished_partial(library: ModelLibrary, source: Path, filename: str = "SmolLM2-135M-Instruct.Q4_1.gguf"):
    """A partial download whose bytes are complete (what the hub module hands over after verifying)."""
    partial = library.partial(REPO, filename)
    state = PartialState(REPO, filename, "ab" * 32, source.stat().st_size, "c" * 40)
    partial.prepare(state)
    shutil.copyfile(source, partial.part)
    return partial, state


def test_the_starter_model_is_listed_with_its_gguf_facts_and_cannot_be_removed(library):
    (starter,) = library.list()
    assert starter.source is ModelSource.STARTER and starter.path == starter_model()
    assert starter.usable and starter.info.architecture == "llama" and starter.info.is_chat
    with pytest.raises(CannotRemoveModel):
        library.remove(starter.id)
    assert starter_model().is_file()


def test_an_import_in_place_is_used_where_it_is_and_kept_on_removal(library, user_copy):
    model = library.import_file(user_copy, copy=False)
    assert model.source is ModelSource.IMPORTED and model.path == user_copy and not model.owned
    assert model.id == "my-model" and model.usable
    assert library.get(model.id).path == user_copy

    library.remove(model.id)
    assert user_copy.is_file()
    assert [m.source for m in library.list()] == [ModelSource.STARTER]


def test_an_import_by_copy_lives_in_the_models_folder_and_goes_on_removal(library, user_copy):
    model = library.import_file(user_copy, copy=True)
    assert model.owned and model.path.parent == library.paths.models / "imported"
    assert model.path.read_bytes() == user_copy.read_bytes()

    library.remove(model.id)
    assert not model.path.exists() and user_copy.is_file()


def test_importing_the_same_file_in_place_twice_keeps_one_entry(library, user_copy):
    first = library.import_file(user_copy, copy=False)
    second = library.import_file(user_copy, copy=False)
    assert first.id == second.id
    assert len(library.list()) == 2  # the starter and this one


def test_files_that_are_not_usable_models_are_refused_on_import(library, tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model at all, just some words " * 10)
    with pytest.raises(NotAGGUF):
        library.import_file(text, copy=True)
    with pytest.raises(ModelFileMissing):
        library.import_file(tmp_path / "missing.gguf", copy=False)
    assert [m.source for m in library.list()] == [ModelSource.STARTER]
    assert not any(library.paths.models.rglob("*.gguf"))


def test_a_file_moved_away_after_import_is_listed_as_unusable(library, user_copy):
    model = library.import_file(user_copy, copy=False)
    user_copy.unlink()
    listed = library.get(model.id)
    assert not listed.usable and "missing" in listed.problem


def test_the_registry_survives_a_restart(library, user_copy):
    model = library.import_file(user_copy, copy=False)
    again = ModelLibrary(library.paths)
    assert again.get(model.id).path == user_copy


def test_gguf_facts_are_read_once_per_file_version(library, user_copy, monkeypatch):
    calls: list[Path] = []
    real_check = library_module.check_gguf

    def counting_check(path):
        calls.append(Path(path))
        return real_check(path)

    monkeypatch.setattr(library_module, "check_gguf", counting_check)
    library.import_file(user_copy, copy=False)
    library.list()
    assert sorted(calls) == sorted([user_copy, starter_model()])
    calls.clear()
    library.list()
    library.list()
    assert calls == []

    stat = user_copy.stat()
    os.utime(user_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    library.list()
    assert calls == [user_copy]


def test_unknown_ids_are_reported(library):
    with pytest.raises(UnknownModel):
        library.remove("no-such-model")


def test_a_finished_download_is_validated_moved_in_and_registered(library, smollm2_path):
    partial, state = finished_partial(library, smollm2_path)
    model = library.add_download(partial, state)
    assert model.source is ModelSource.DOWNLOADED and model.owned
    assert model.path == library.paths.models / "test-org--SmolLM2-135M-Instruct-GGUF" / state.filename
    assert (model.repo_id, model.filename, model.sha256) == (REPO, state.filename, state.sha256)
    assert model.id != library.list()[0].id  # the same file name as the starter, still its own id
    assert not partial.part.exists() and not partial.state_path.exists()
    assert library.find_download(REPO, state.filename) == model


def test_a_download_that_is_not_a_valid_gguf_is_deleted_not_registered(library, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 200)
    partial, state = finished_partial(library, junk, "junk.gguf")
    with pytest.raises(Exception) as raised:
        library.add_download(partial, state)
    assert type(raised.value).__module__ == "slmchat.core.errors"
    assert not partial.part.exists()
    assert library.find_download(REPO, "junk.gguf") is None


def test_removing_a_download_deletes_its_file_folder_and_partials(library, smollm2_path):
    partial, state = finished_partial(library, smollm2_path)
    model = library.add_download(partial, state)
    newer = PartialState(REPO, state.filename, "cd" * 32, state.size, "d" * 40)
    partial.prepare(newer)  # an update of the same file, half downloaded
    library.remove(model.id)
    assert not model.path.exists() and not model.path.parent.exists()
    assert not partial.part.exists() and not partial.state_path.exists()


def test_a_partial_keeps_its_bytes_only_for_the_same_upload(library):
    partial = library.partial(REPO, "model.gguf")
    state = PartialState(REPO, "model.gguf", "ab" * 32, 1000, None)
    assert partial.prepare(state) == 0
    partial.part.write_bytes(b"x" * 300)
    assert partial.prepare(state) == 300
    assert partial.prepare(PartialState(REPO, "model.gguf", "ef" * 32, 1000, None)) == 0
    assert partial.size() == 0


def test_unfinished_downloads_are_listed_for_the_next_start(library):
    partial = library.partial(REPO, "model.gguf")
    state = PartialState(REPO, "model.gguf", "ab" * 32, 1000, None)
    partial.prepare(state)
    partial.part.write_bytes(b"x" * 300)
    library.partial(REPO, "orphan.gguf").part.write_bytes(b"no state")
    (unfinished,) = ModelLibrary(library.paths).unfinished_downloads()
    assert (unfinished.state, unfinished.done) == (state, 300)


def test_stale_leftovers_are_cleaned_but_resumable_and_running_downloads_are_kept(library):
    downloads = library.paths.downloads
    resumable = library.partial(REPO, "resumable.gguf")
    resumable.prepare(PartialState(REPO, "resumable.gguf", "ab" * 32, 1000, None))
    running = library.partial(REPO, "running.gguf")
    running.part.write_bytes(b"no state yet")
    orphan_part = library.partial(REPO, "orphan.gguf").part
    orphan_part.write_bytes(b"bytes nobody can resume")
    orphan_state = library.partial(REPO, "gone.gguf").state_path
    orphan_state.write_text(json.dumps({"repo_id": REPO}))
    hf_leftover = downloads / "abc.1234abcd.incomplete"
    hf_leftover.write_bytes(b"")

    with running.locked():
        removed = library.cleanup_stale()
        assert running.part.exists()
        with pytest.raises(DownloadAlreadyRunning), running.locked():
            pass

    assert set(removed) >= {orphan_part, orphan_state, hf_leftover}
    assert not orphan_part.exists() and not orphan_state.exists() and not hf_leftover.exists()
    assert resumable.part.exists() and resumable.load_state() is not None


# --- the registry is a file on disk: what it says is checked before a file is used or deleted ---
def write_registry(library: ModelLibrary, *entries: dict) -> None:
    """models.json as an older version, another program or a hostile hand could have left it."""
    registry = library.paths.data / library_module.REGISTRY_FILE
    registry.write_text(json.dumps({"version": library_module.REGISTRY_VERSION, "models": list(entries)}))


@pytest.fixture
def outside_model(tmp_path: Path, smollm2_path: Path) -> Path:
    """A real, valid GGUF outside slmchat's folders: what an escaping entry would use and delete."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return Path(shutil.copy(smollm2_path, folder / "precious.gguf"))


def escaping_paths(library: ModelLibrary, outside: Path) -> dict[str, str]:
    models = library.paths.models
    return {
        "dot-dot": os.path.relpath(outside, models),  # "../../elsewhere/precious.gguf"
        "absolute": str(outside),
        "dot-dot inside an absolute path": str(models / "imported" / ".." / os.path.relpath(outside, models)),
    }


@pytest.mark.parametrize("where", ["dot-dot", "absolute", "dot-dot inside an absolute path"])
@pytest.mark.parametrize(("source", "owned"), [("downloaded", True), ("imported", True), ("downloaded", False)])
def test_a_kept_model_whose_registry_path_leaves_the_models_folder_is_neither_used_nor_deleted(
    library, outside_model, smollm2_path, where, source, owned
):
    write_registry(library, {"id": "escapee", "source": source, "owned": owned,
                             "path": escaping_paths(library, outside_model)[where]})
    listed = library.get("escapee")
    assert not listed.usable and listed.info is None and not listed.owned
    assert "outside its models folder" in listed.problem

    library.remove("escapee")
    assert outside_model.is_file() and outside_model.stat().st_size == smollm2_path.stat().st_size
    assert [m.source for m in library.list()] == [ModelSource.STARTER]  # the entry itself is forgotten


def test_a_symlinked_folder_inside_models_cannot_lead_remove_to_a_file_outside(library, outside_model):
    link = library.paths.models / "test-org--Escape-GGUF"
    link.symlink_to(outside_model.parent, target_is_directory=True)
    write_registry(library, {"id": "escapee", "source": "downloaded", "owned": True,
                             "path": f"{link.name}/{outside_model.name}", "repo_id": "test-org/Escape-GGUF",
                             "filename": outside_model.name})
    assert not library.get("escapee").usable
    library.remove("escapee")
    assert outside_model.is_file()


def test_a_symlinked_model_file_pointing_outside_is_not_used(library, outside_model):
    (library.paths.models / "imported").mkdir()
    link = library.paths.models / "imported" / "looks-local.gguf"
    link.symlink_to(outside_model)
    write_registry(library, {"id": "escapee", "source": "imported", "owned": True, "path": "imported/looks-local.gguf"})
    listed = library.get("escapee")
    assert not listed.usable and "outside its models folder" in listed.problem
    library.remove("escapee")
    assert outside_model.is_file()


def test_remove_never_deletes_partial_files_outside_the_downloads_folder(library, outside_model):
    """repo_id and filename name the partial download that Remove also deletes: a filename with
    `..` in the registry must not reach files beside the downloads folder."""
    victim = library.paths.data / "victim.part"
    victim.write_bytes(b"not slmchat's")
    state = victim.with_name("victim.part.json")
    state.write_text("{}")
    repo_id, filename = "test-org/Escape-GGUF", "../../../victim"
    (library.paths.downloads / "test-org--Escape-GGUF--..").mkdir()  # so the path can be walked
    assert library.partial(repo_id, filename).part.resolve() == victim.resolve()
    model_file = library.paths.models / "test-org--Escape-GGUF" / "model.gguf"
    model_file.parent.mkdir()
    shutil.copyfile(outside_model, model_file)
    write_registry(library, {"id": "tricky", "source": "downloaded", "owned": True,
                             "path": "test-org--Escape-GGUF/model.gguf", "repo_id": repo_id, "filename": filename})

    library.remove("tricky")
    assert not model_file.exists()  # its own file, inside the models folder, goes
    assert victim.read_bytes() == b"not slmchat's" and state.is_file()


def test_models_used_where_they_are_may_still_live_anywhere(library, outside_model):
    write_registry(library, {"id": "in-place", "source": "imported", "owned": False, "path": str(outside_model)})
    listed = library.get("in-place")
    assert listed.usable and listed.path == outside_model
    library.remove("in-place")
    assert outside_model.is_file()


def test_malformed_registry_entries_are_skipped_and_the_rest_still_listed(library, outside_model):
    write_registry(
        library,
        {"id": "no-source", "path": str(outside_model)},
        {"id": "odd-source", "source": "starter", "owned": False, "path": str(outside_model)},
        {"id": "weird-source", "source": "borrowed", "owned": False, "path": str(outside_model)},
        {"id": ["a", "list"], "source": "imported", "owned": False, "path": str(outside_model)},
        {"id": "path-object", "source": "imported", "owned": False, "path": {"file": str(outside_model)}},
        {"id": "null-byte", "source": "imported", "owned": False, "path": "bad\0name.gguf"},
        {"id": "owned-text", "source": "imported", "owned": "yes", "path": str(outside_model)},
        {"id": "repo-number", "source": "imported", "owned": False, "path": str(outside_model), "repo_id": 7},
        "not an entry",
        {"id": "good", "source": "imported", "owned": False, "path": str(outside_model)},
    )
    assert [m.id for m in library.list()][1:] == ["good"]
    (library.paths.data / library_module.REGISTRY_FILE).write_text(json.dumps({"models": {"good": 1}}))
    assert [m.source for m in library.list()] == [ModelSource.STARTER]


@pytest.mark.parametrize("copy", [True, False])
def test_another_model_under_a_catalog_file_s_name_is_refused_on_import(library, smollm2_path, tmp_path, copy):
    """The window's import and the CLI's share this check: SmolLM2-135M named like the 360M file."""
    impostor = tmp_path / "SmolLM2-360M-Instruct.Q4_K_M.gguf"
    shutil.copyfile(smollm2_path, impostor)
    with pytest.raises(WrongModel, match="holds a different model"):
        library.import_file(impostor, copy=copy)
    assert [m.source for m in library.list()] == [ModelSource.STARTER]
