"""Nothing leaves the machine except what the user asked for: proven on the socket level in a fresh process.

Each run starts a new Python process whose `socket.socket.connect` and `socket.getaddrinfo` log
every address, with none of the privacy switches in its environment (slmchat must set them
itself). It imports the app, lists models, runs `slmchat-cli models`, and downloads one file
from the loopback hub. The only connections allowed are to that hub, and the hub must have seen
only the requests of that download. A control run of bare huggingface_hub shows the same probe
does catch the library's own telemetry request when nobody turns it off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hub_server import FakeHub


REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, socket, sys
connects, lookups = [], []
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def connect(self, address):
    connects.append(list(address) if isinstance(address, tuple) else address)
    return _connect(self, address)
def connect_ex(self, address):
    connects.append(list(address) if isinstance(address, tuple) else address)
    return _connect_ex(self, address)
def getaddrinfo(host, *args, **kwargs):
    lookups.append(host)
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo

mode, repo, filename = sys.argv[1:4]
if mode == "bare-huggingface-hub":
    import huggingface_hub
    huggingface_hub.hf_hub_download(repo, filename)
else:
    if mode == "huggingface-hub-imported-first":
        # Before slmchat could set the environment (huggingface_hub loads submodules lazily,
        # so the constants must be touched for them to be read now).
        from huggingface_hub import constants, file_download
        assert not constants.HF_HUB_DISABLE_TELEMETRY
    import slmchat.cli
    from slmchat.cli import main
    from slmchat.core.gguf import check as gguf_check
    from slmchat.core.models import catalog, hardware, hub, library
    from slmchat.paths import Paths
    models = library.ModelLibrary(Paths.default().ensure())
    models.cleanup_stale()
    models.list()
    assert main(["models"]) == 0
    hub.Hub(models).download(repo, filename)
print("PROBE " + json.dumps({"connects": connects, "lookups": lookups}))
"""


def run_probe(mode: str, hub: FakeHub, tmp_path: Path, filename: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY", "HF_HUB_DISABLE_XET", "HF_TOKEN"}
    }
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf-home"),
        SLMCHAT_HOME=str(tmp_path / "slmchat-home"),
        PYTHONPATH=str(ROOT),
        NO_PROXY="127.0.0.1,localhost",
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode, REPO, filename],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


@pytest.mark.parametrize("mode", ["slmchat", "huggingface-hub-imported-first"])
def test_only_the_download_the_user_started_reaches_the_network(mode, fake_hub, tmp_path, smollm2_path):
    seen = run_probe(mode, fake_hub, tmp_path, smollm2_path.name)

    assert seen["connects"], "the probe saw no connection at all: it is not working"
    assert {tuple(address[:2]) for address in seen["connects"]} == {("127.0.0.1", fake_hub.port)}
    assert set(seen["lookups"]) <= {"127.0.0.1"}
    assert [(r.method, r.path) for r in fake_hub.requests] == [
        ("HEAD", f"/{REPO}/resolve/main/{smollm2_path.name}"),
        ("GET", f"/{REPO}/resolve/main/{smollm2_path.name}"),
    ]


def test_the_probe_catches_huggingface_hubs_own_telemetry_request(fake_hub, tmp_path, smollm2_path):
    """Control: bare huggingface_hub, nobody turning telemetry off, sends a request the user never asked for."""
    run_probe("bare-huggingface-hub", fake_hub, tmp_path, smollm2_path.name)
    assert "/api/agent-harnesses" in [r.path for r in fake_hub.requests]
