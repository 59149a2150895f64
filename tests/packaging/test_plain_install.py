"""A plain `pip install .` (not editable) into a fresh virtualenv gives a working slmchat:
the commands exist, the assets (catalog, themes, icons) are inside the installed package, a
real model chats through slmchat-cli, and the app's --self-test passes.

pip reuses its cached wheels (llama-cpp-python is pinned to the version this test runs with,
whose wheel the README's set-up compiled and cached), so nothing is recompiled; still about a
minute on 2 cores, hence `slow`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with slmchat installed from a copy of the source (the checkout's build/ and
    egg-info cannot leak in); its bin/ folder."""
    work = tmp_path_factory.mktemp("plain-install")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("slmchat", "assets"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = work / "constraints.txt"
    constraints.write_text(f"llama-cpp-python=={version('llama_cpp_python')}\n", encoding="utf-8")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(constraints),
                    str(source)], check=True, timeout=900)
    return venv / "bin"


def run(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLMCHAT_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=home.parent)
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_installed_package_carries_its_assets_and_the_cli_lists_the_catalog(installed: Path, slmchat_home: Path) -> None:
    located = run([str(installed / "python"), "-c", "from slmchat.paths import assets_dir; print(assets_dir())"],
                  slmchat_home).stdout.strip()
    site_packages = run([str(installed / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        slmchat_home).stdout.strip()
    assert Path(located) == Path(site_packages) / "slmchat" / "assets"
    for asset in ("catalog.json", "themes/style.qss", "icons/slmchat-256.png"):
        assert (Path(located) / asset).is_file(), asset
    first_in_catalog = json.loads((ROOT / "assets" / "catalog.json").read_text(encoding="utf-8"))["models"][0]["id"]
    assert first_in_catalog in run([str(installed / "slmchat-cli"), "models"], slmchat_home).stdout


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_installed_cli_chats_with_a_real_model(installed: Path, slmchat_home: Path, smollm2_path: Path) -> None:
    done = run([str(installed / "slmchat-cli"), "chat", "--prompt", "hi", "--model", str(smollm2_path),
                "--max-tokens", "8", "--threads", "1"], slmchat_home)
    assert done.stdout.strip(), done.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_installed_app_passes_its_self_test(installed: Path, slmchat_home: Path, smollm2_path: Path) -> None:
    done = run([str(installed / "slmchat"), "--self-test", str(smollm2_path)], slmchat_home)
    assert "self-test passed" in done.stdout
