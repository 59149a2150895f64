"""Where files live: platform folders by default, one folder when SLMCHAT_HOME is set."""

from pathlib import Path

from slmchat.paths import Paths, starter_model


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
