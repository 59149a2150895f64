"""Downloads obey the catalog's pins: the pinned commit, its exact bytes, the catalog model's header;
an unpinned catalog file is held to its first download; an unrunnable architecture is refused up front."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import hostile_gguf
import pytest

from slmchat.core.errors import DownloadVerificationFailed
from slmchat.core.models import hardware
from slmchat.core.errors import WrongModel
from slmchat.core.models.catalog import load_catalog
from slmchat.core.models.hub import Hub, UnsupportedArchitecture
from slmchat.core.models.library import ModelLibrary
from slmchat.paths import Paths

CATALOG = Path(__file__).resolve().parents[3] / "assets" / "catalog.json"
REPO_360M = "mradermacher/SmolLM2-360M-Instruct-GGUF"
FILE_360M = "SmolLM2-360M-Instruct.Q4_K_M.gguf"
REPO_135M = "mradermacher/SmolLM2-135M-Instruct-GGUF"
FILE_135M = "SmolLM2-135M-Instruct.Q4_K_M.gguf"
ROOMY = hardware.Machine(total_ram=64 * 1000**3, available_ram=48 * 1000**3, physical_cores=8)


@pytest.fixture
def library(slmchat_home: Path) -> ModelLibrary:
    return ModelLibrary(Paths.default().ensure())


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_catalog(tmp_path: Path, entry_id: str, quant: str, revision: str, data: Path) -> Path:
    """A copy of the shipped catalog with one file pinned to `data`'s bytes at `revision`."""
    raw = json.loads(CATALOG.read_text(encoding="utf-8"))
    entry = next(m for m in raw["models"] if m["id"] == entry_id)
    item = next(f for f in entry["files"] if f["quant"] == quant)
    item.update(revision=revision, size_bytes=data.stat().st_size, sha256=sha256_of(data), verified=True, unconfirmed=[])
    item.pop("unverified_reason", None)
    entry["sources"].append(f"test pin at {revision}")
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_the_wrong_model_under_a_pinned_name_is_refused_by_its_header_not_its_hash(library, fake_hub, smollm2_path, tmp_path):
    repo = fake_hub.add_repo(REPO_360M, {FILE_360M: smollm2_path})  # the 135M model's real bytes, the 360M name
    catalog = load_catalog(pinned_catalog(tmp_path, "smollm2-360m-instruct", "Q4_K_M", repo.head, smollm2_path))
    hub = Hub(library, endpoint=fake_hub.url, catalog=catalog)
    with pytest.raises(WrongModel, match="named like SmolLM2 360M Instruct but holds a different model") as caught:
        hub.download(REPO_360M, FILE_360M)
    assert "block_count 30, expected 32" in caught.value.detail
    assert fake_hub.bytes_served(FILE_360M) == smollm2_path.stat().st_size  # the hash passed: all bytes came
    assert library.find_download(REPO_360M, FILE_360M) is None
    assert not any(library.paths.downloads.glob("*.part"))


def test_a_pinned_file_is_fetched_at_its_commit_even_after_a_reupload_on_main(library, fake_hub, smollm2_path, tmp_path):
    repo = fake_hub.add_repo(REPO_135M, {FILE_135M: smollm2_path})
    pinned_at = repo.head
    catalog = load_catalog(pinned_catalog(tmp_path, "smollm2-135m-instruct", "Q4_K_M", pinned_at, smollm2_path))
    other = Path(shutil.copy(smollm2_path, tmp_path / "other.gguf"))
    with other.open("r+b") as handle:  # same size, different bytes: what a silent re-upload looks like
        handle.seek(other.stat().st_size - 16)
        handle.write(b"\xff" * 16)
    fake_hub.reupload(REPO_135M, FILE_135M, other)
    model = Hub(library, endpoint=fake_hub.url, catalog=catalog).download(REPO_135M, FILE_135M)
    (get,) = fake_hub.downloads_of(FILE_135M)
    assert get.path == f"/{REPO_135M}/resolve/{pinned_at}/{FILE_135M}"
    assert (model.sha256, model.commit) == (sha256_of(smollm2_path), pinned_at)


def test_bytes_that_differ_from_the_pin_are_refused_before_a_byte_is_fetched(library, fake_hub, smollm2_path, tmp_path):
    fake_hub.add_repo(REPO_135M, {FILE_135M: smollm2_path})
    changed = fake_hub.reupload(REPO_135M, FILE_135M, hostile_gguf.unknown_architecture(smollm2_path, tmp_path).path)
    # The catalog pins the newest commit, but with the original bytes: the hub's bytes there differ.
    catalog = load_catalog(pinned_catalog(tmp_path, "smollm2-135m-instruct", "Q4_K_M", changed, smollm2_path))
    with pytest.raises(DownloadVerificationFailed, match="not the file slmchat expects"):
        Hub(library, endpoint=fake_hub.url, catalog=catalog).download(REPO_135M, FILE_135M)
    assert fake_hub.downloads_of(FILE_135M) == []


def test_an_unpinned_catalog_file_is_held_to_its_first_download_even_after_removal(library, fake_hub, smollm2_path, tmp_path):
    repo = fake_hub.add_repo(REPO_135M, {FILE_135M: smollm2_path})  # unpinned in the shipped catalog
    first_commit = repo.head
    hub = Hub(library, endpoint=fake_hub.url)
    assert not hub.catalog.find_file(REPO_135M, FILE_135M)[1].verified
    first = hub.download(REPO_135M, FILE_135M)
    assert fake_hub.downloads_of(FILE_135M)[0].path == f"/{REPO_135M}/resolve/main/{FILE_135M}"
    library.remove(first.id)
    other = Path(shutil.copy(smollm2_path, tmp_path / "other.gguf"))
    with other.open("r+b") as handle:
        handle.seek(other.stat().st_size - 16)
        handle.write(b"\xff" * 16)
    fake_hub.reupload(REPO_135M, FILE_135M, other)
    fake_hub.requests.clear()
    again = Hub(library, endpoint=fake_hub.url).download(REPO_135M, FILE_135M)
    (get,) = fake_hub.downloads_of(FILE_135M)
    assert get.path == f"/{REPO_135M}/resolve/{first_commit}/{FILE_135M}"
    assert again.sha256 == sha256_of(smollm2_path)


def test_an_unsupported_architecture_is_listed_with_its_reason_and_never_downloaded(library, fake_hub, smollm2_path, tmp_path):
    alien = hostile_gguf.unknown_architecture(smollm2_path, tmp_path).path
    fake_hub.add_repo("alien-org/Frob-GGUF", {"frob.Q4_1.gguf": alien})
    hub = Hub(library, endpoint=fake_hub.url)
    (listed,) = hub.list_gguf_files("alien-org/Frob-GGUF", machine=ROOMY)
    assert listed.architecture == "frobnicator" and listed.fit is None
    assert "frobnicator" in listed.unsupported_reason and "does not support" in listed.unsupported_reason
    assert listed.fit_problem == listed.unsupported_reason  # the tooltip the hub tab already shows
    assert listed.fit_text == "can't run (frobnicator)"
    fake_hub.requests.clear()
    with pytest.raises(UnsupportedArchitecture, match="frobnicator"):
        hub.download("alien-org/Frob-GGUF", "frob.Q4_1.gguf")
    assert fake_hub.requests == []  # refused before any request, let alone a byte
    (ok,) = hub.list_gguf_files("test-org/SmolLM2-135M-Instruct-GGUF", machine=ROOMY)
    assert ok.architecture == "llama" and ok.unsupported_reason is None
