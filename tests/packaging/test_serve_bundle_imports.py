"""The API server in the PyInstaller bundle: uvicorn imports its event loop, HTTP protocol and
lifespan by name when it starts, which PyInstaller cannot see; the spec must list exactly the
ones slmchat chooses, and the self-check the bundle runs must serve a request with them."""

from __future__ import annotations

from pathlib import Path

import uvicorn.config

from slmchat.core.serve import running

SPEC = Path(__file__).resolve().parents[2] / "packaging" / "slmchat.spec"


def test_the_modules_uvicorn_imports_by_name_are_the_ones_its_tables_name_for_slmchats_choices() -> None:
    tables = {"loop": uvicorn.config.LOOP_FACTORIES, "http": uvicorn.config.HTTP_PROTOCOLS,
              "ws": uvicorn.config.WS_PROTOCOLS, "lifespan": uvicorn.config.LIFESPAN}
    named = {tables[option][choice] for option, choice in running._CHOICES.items()} - {None}
    assert sorted(target.split(":")[0] for target in named) == sorted(running.STRING_IMPORTED)


def test_the_bundle_spec_lists_every_module_uvicorn_imports_by_name() -> None:
    spec = SPEC.read_text()
    assert all(f'"{module}"' in spec for module in running.STRING_IMPORTED)


def test_the_self_check_serves_the_model_list_on_a_free_loopback_port() -> None:
    assert running.self_check().startswith("ok")
