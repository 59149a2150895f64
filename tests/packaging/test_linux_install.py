"""packaging/linux/install.sh and uninstall.sh, run for real in an unpacked-bundle folder with
HOME and every XDG_* folder inside a temporary directory.

The bundle's `slmchat` program here is a two-line script that runs this checkout's slmchat
(the real argument parser decides whether .gguf files may be associated), or, for the
association itself, a program whose --help offers a MODEL.gguf argument."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
OTHER_DEFAULTS = "[Default Applications]\ntext/plain=org.gnome.TextEditor.desktop\n\n[Added Associations]\nimage/png=eog.desktop\n"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux desktop integration")


def unpacked_bundle(folder: Path, program: str) -> Path:
    """A folder laid out as build_linux.sh lays out the bundle, with `program` as slmchat."""
    folder.mkdir()
    for name in ("install.sh", "uninstall.sh", "slmchat.desktop", "gguf-mime.xml"):
        shutil.copy2(LINUX / name, folder / name)
    shutil.copy2(ROOT / "assets" / "icons" / "slmchat-256.png", folder / "slmchat.png")
    (folder / "slmchat").write_text(f"#!/bin/sh\n{program}\n", encoding="utf-8")
    (folder / "slmchat").chmod(0o755)
    return folder


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose home and XDG folders are all under tmp_path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env["HOME"] = str(tmp_path / "home")
    env.update({"XDG_DATA_HOME": str(tmp_path / "xdg" / "data"), "XDG_CONFIG_HOME": str(tmp_path / "xdg" / "config"),
                "XDG_CACHE_HOME": str(tmp_path / "xdg" / "cache"), "XDG_STATE_HOME": str(tmp_path / "xdg" / "state")})
    return env


def run(script: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def xdg(env: dict[str, str], kind: str, *parts: str) -> Path:
    return Path(env[f"XDG_{kind}_HOME"], *parts)


def test_install_adds_the_menu_entry_icon_and_gguf_type_and_associates_only_what_the_app_accepts(
        tmp_path: Path, home: dict[str, str]) -> None:
    bundle = unpacked_bundle(tmp_path / "slmchat", f'exec "{sys.executable}" -m slmchat.app "$@"')
    accepts_a_file = "MODEL.gguf" in subprocess.run([str(bundle / "slmchat"), "--help"], capture_output=True,
                                                    text=True, check=True).stdout
    run(bundle / "install.sh", home)

    entry = xdg(home, "DATA", "applications", "slmchat.desktop").read_text(encoding="utf-8")
    program = f'Exec="{bundle / "slmchat"}"'
    assert (program + " %f" if accepts_a_file else program) in entry.splitlines()
    assert ("MimeType=application/x-gguf;" in entry) == accepts_a_file
    assert xdg(home, "DATA", "icons", "hicolor", "256x256", "apps", "slmchat.png").is_file()
    assert "application/x-gguf" in xdg(home, "DATA", "mime", "packages", "slmchat-gguf.xml").read_text(encoding="utf-8")
    mimeapps = xdg(home, "CONFIG", "mimeapps.list")
    assert ("application/x-gguf=slmchat.desktop" in (mimeapps.read_text(encoding="utf-8") if mimeapps.exists() else "")) \
        == accepts_a_file


def test_a_program_that_takes_a_model_file_becomes_the_default_for_gguf_and_uninstall_takes_it_back(
        tmp_path: Path, home: dict[str, str]) -> None:
    bundle = unpacked_bundle(tmp_path / "slmchat", 'echo "usage: slmchat [options] [MODEL.gguf]"')
    mimeapps = xdg(home, "CONFIG", "mimeapps.list")
    mimeapps.parent.mkdir(parents=True)
    mimeapps.write_text(OTHER_DEFAULTS + "\n[Default Applications]\napplication/x-gguf=other.desktop\n", encoding="utf-8")
    run(bundle / "install.sh", home)
    run(bundle / "install.sh", home)  # twice: still one entry

    entry = xdg(home, "DATA", "applications", "slmchat.desktop").read_text(encoding="utf-8")
    assert f'Exec="{bundle / "slmchat"}" %f' in entry.splitlines()
    assert entry.count("MimeType=application/x-gguf;") == 1
    listed = mimeapps.read_text(encoding="utf-8")
    assert listed.count("application/x-gguf=") == 1 and "application/x-gguf=slmchat.desktop" in listed
    assert "text/plain=org.gnome.TextEditor.desktop" in listed and "image/png=eog.desktop" in listed

    run(bundle / "uninstall.sh", home)
    assert not xdg(home, "DATA", "applications", "slmchat.desktop").exists()
    assert not xdg(home, "DATA", "icons", "hicolor", "256x256", "apps", "slmchat.png").exists()
    assert not xdg(home, "DATA", "mime", "packages", "slmchat-gguf.xml").exists()
    listed = mimeapps.read_text(encoding="utf-8")
    assert "slmchat" not in listed
    assert "text/plain=org.gnome.TextEditor.desktop" in listed and "image/png=eog.desktop" in listed


def test_uninstall_keeps_the_users_data_unless_asked_and_never_deletes_a_moved_data_folder(
        tmp_path: Path, home: dict[str, str]) -> None:
    bundle = unpacked_bundle(tmp_path / "slmchat", 'echo "usage: slmchat"')
    run(bundle / "install.sh", home)
    kept = [xdg(home, "DATA", "slmchat", "slmchat.db"), xdg(home, "CACHE", "slmchat", "kv", "1.state"),
            xdg(home, "STATE", "slmchat", "log", "slmchat.log")]
    moved = tmp_path / "Documents" / "my chats"
    (moved / "models").mkdir(parents=True)
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine", encoding="utf-8")
    config = xdg(home, "CONFIG", "slmchat", "config.json")
    config.parent.mkdir(parents=True)
    config.write_text(f'{{"data_folder": "{moved}"}}', encoding="utf-8")

    run(bundle / "uninstall.sh", home)
    assert all(path.is_file() for path in [*kept, config])

    said = run(bundle / "uninstall.sh", home, "--remove-data")
    assert not any(xdg(home, kind, "slmchat").exists() for kind in ("DATA", "CONFIG", "CACHE", "STATE"))
    assert moved.is_dir() and str(moved) in said
