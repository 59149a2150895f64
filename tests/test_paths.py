"""Where files live: platform folders by default, one folder when SLMCHAT_HOME is set."""

from pathlib import Path

import pytest

from slmchat.paths import Paths, starter_model, write_data_folder


def test_slmchat_home_relocates_everything(slmchat_home: Path) -> None:
    paths = Paths.default().ensure()
    for location in (paths.data, paths.config, paths.cache, paths.logs, paths.models, paths.database):
        assert slmchat_home.resolve() in location.parents
    assert paths.models.is_dir()


def test_default_paths_are_the_platform_folders(monkeypatch) -> None:
    monkeypatch.delenv("SLMCHAT_HOME")
    paths = Paths.default()
    assert "slmchat" in str(paths.data)
    assert paths.data != paths.cache


def test_the_starter_model_is_found_without_a_download(smollm2_path: Path) -> None:
    found = starter_model()
    assert found is not None
    assert found.read_bytes()[:4] == b"GGUF"
    assert found.stat().st_size == smollm2_path.stat().st_size


def test_a_moved_data_folder_is_used_by_every_entry_point(slmchat_home: Path, tmp_path: Path) -> None:
    paths = Paths.default()
    write_data_folder(paths, tmp_path / "elsewhere")
    assert Paths.default().data == tmp_path / "elsewhere"
    assert Paths.default().config == paths.config  # the pointer itself stays where it is found
    write_data_folder(paths, None)
    assert Paths.default().data == paths.data


def test_an_empty_or_relative_data_folder_is_refused_and_the_choice_kept(slmchat_home: Path, tmp_path: Path) -> None:
    from slmchat.core.errors import InvalidDataFolder
    from slmchat.paths import read_data_folder

    paths = Paths.default()
    write_data_folder(paths, tmp_path / "kept")
    with pytest.raises(InvalidDataFolder, match="empty"):
        write_data_folder(paths, "  ")
    with pytest.raises(InvalidDataFolder, match="“my data” is not a full path"):
        write_data_folder(paths, "my data")
    with pytest.raises(InvalidDataFolder, match="not a full path"):
        write_data_folder(paths, Path(""))
    assert read_data_folder(paths) == tmp_path / "kept"
    write_data_folder(paths, "~/slmchat-data")
    assert read_data_folder(paths) == Path.home() / "slmchat-data"
