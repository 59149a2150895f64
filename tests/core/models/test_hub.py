"""Downloads through the real huggingface_hub client against a loopback hub: they finish, resume, verify, stop."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hostile_gguf
import pytest

from slmchat.core.errors import (
    DownloadAlreadyRunning,
    DownloadCancelled,
    DownloadPaused,
    DownloadVerificationFailed,
    HubAccessDenied,
    HubNotFound,
    HubUnreachable,
    ModelFileDamaged,
    NotEnoughDiskSpace,
    UnsafeName,
    UnsupportedModel,
)
from slmchat.core.gguf.check import check_gguf
from slmchat.core.models import hardware
from slmchat.core.models.hub import (
    CHUNK_SIZE,
    HEADER_MAX_FETCH,
    DownloadControl,
    DownloadProgress,
    Hub,
    guess_quantization,
    model_stem,
    split_part,
    UnsupportedArchitecture,
)
from slmchat.core.models.library import ModelLibrary, ModelSource
from slmchat.paths import Paths

if TYPE_CHECKING:
    from hub_server import FakeHub


REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def library(slmchat_home: Path) -> ModelLibrary:
    return ModelLibrary(Paths.at(slmchat_home).ensure())


@pytest.fixture
def hub(library: ModelLibrary, fake_hub: FakeHub) -> Hub:
    return Hub(library, endpoint=fake_hub.url)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(library: ModelLibrary) -> list[str]:
    """Partial bytes or state files left in the downloads folder (lock files are harmless)."""
    return sorted(p.name for p in library.paths.downloads.iterdir() if not p.name.endswith(".lock"))


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_in_thread(target) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def runner() -> None:
        try:
            outcome["result"] = target()
        except Exception as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    return thread, outcome


def test_a_full_download_is_verified_and_registered(hub, library, fake_hub, smollm2_path):
    seen: list[DownloadProgress] = []
    model = hub.download(REPO, smollm2_path.name, on_progress=seen.append)

    assert model.source is ModelSource.DOWNLOADED
    assert model.path.parent == library.paths.models / "test-org--SmolLM2-135M-Instruct-GGUF"
    assert file_sha256(model.path) == file_sha256(smollm2_path) == model.sha256
    assert model.info is not None and model.info.architecture == "llama"
    assert model.id in [m.id for m in library.list()]
    assert leftovers(library) == []
    assert [(r.method, r.path) for r in fake_hub.requests] == [
        ("HEAD", f"/{REPO}/resolve/main/{smollm2_path.name}"),
        ("GET", f"/{REPO}/resolve/main/{smollm2_path.name}"),
    ]
    # Progress: many small steps, never backwards, ending at the size, with a speed.
    size = smollm2_path.stat().st_size
    assert len(seen) >= 2 and seen[-1].done == seen[-1].total == size
    assert all(a.done <= b.done for a, b in itertools.pairwise(seen))
    assert seen[-1].speed > 0


def test_downloading_a_file_already_here_fetches_no_bytes(hub, fake_hub, smollm2_path):
    first = hub.download(REPO, smollm2_path.name)
    fake_hub.requests.clear()
    again = hub.download(REPO, smollm2_path.name)
    assert again.id == first.id
    assert [r.method for r in fake_hub.requests] == ["HEAD"]


def test_hf_endpoint_from_the_environment_is_used(library, fake_hub, smollm2_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    files = Hub(library).list_gguf_files(REPO)
    assert [f.filename for f in files] == [smollm2_path.name]


def test_a_dropped_connection_resumes_without_fetching_finished_bytes_again(hub, fake_hub, smollm2_path):
    cut = 8 * CHUNK_SIZE
    fake_hub.faults.drop_at = cut
    model = hub.download(REPO, smollm2_path.name)

    gets = fake_hub.downloads_of(smollm2_path.name)
    assert len(gets) == 2
    assert "range" not in gets[0].headers and gets[0].body_bytes == cut
    assert gets[1].headers["range"] == f"bytes={cut}-"
    assert sum(g.body_bytes for g in gets) == smollm2_path.stat().st_size
    assert file_sha256(model.path) == file_sha256(smollm2_path)


def test_a_stalled_connection_times_out_and_the_download_continues_by_itself(hub, fake_hub, smollm2_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # seconds without a byte before giving up a read
    stall = 8 * CHUNK_SIZE
    fake_hub.faults.stall_at = stall
    model = hub.download(REPO, smollm2_path.name)
    first, second = fake_hub.downloads_of(smollm2_path.name)
    assert first.body_bytes == stall and second.headers["range"] == f"bytes={stall}-"
    assert file_sha256(model.path) == file_sha256(smollm2_path)


@pytest.mark.slow
def test_a_connection_that_keeps_failing_keeps_the_partial_for_later(hub, library, fake_hub, smollm2_path):
    cut = 4 * CHUNK_SIZE
    fake_hub.faults.drop_at, fake_hub.faults.drop_times = cut, None
    with pytest.raises(HubUnreachable, match="kept"):
        hub.download(REPO, smollm2_path.name)
    partial = library.partial(REPO, smollm2_path.name)
    assert partial.size() == cut and partial.load_state() is not None
    assert library.find_download(REPO, smollm2_path.name) is None

    fake_hub.faults.drop_at = None
    fake_hub.requests.clear()
    model = hub.download(REPO, smollm2_path.name)
    (get,) = fake_hub.downloads_of(smollm2_path.name)
    assert get.headers["range"] == f"bytes={cut}-"
    assert file_sha256(model.path) == file_sha256(smollm2_path)


def test_a_download_killed_with_its_process_resumes_in_a_new_one(hub, library, fake_hub, smollm2_path, slmchat_home):
    stall = 16 * CHUNK_SIZE
    fake_hub.faults.stall_at = stall
    env = {**os.environ, "HF_ENDPOINT": fake_hub.url, "SLMCHAT_HOME": str(slmchat_home), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "slmchat.cli", "download", REPO, smollm2_path.name],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    partial = library.partial(REPO, smollm2_path.name)
    try:
        deadline = time.monotonic() + 60
        while not (fake_hub.stalled.is_set() and partial.size() == stall):
            assert child.poll() is None and time.monotonic() < deadline, "the child never reached the stall"
            time.sleep(0.05)
    finally:
        child.kill()  # SIGKILL: no chance to clean up, like a crash or a power cut
        child.wait(timeout=10)
    fake_hub.release_stall()
    fake_hub.faults.stall_at = None
    fake_hub.requests.clear()

    model = hub.download(REPO, smollm2_path.name)

    (get,) = fake_hub.downloads_of(smollm2_path.name)
    assert get.headers["range"] == f"bytes={stall}-"
    assert get.body_bytes == smollm2_path.stat().st_size - stall
    assert file_sha256(model.path) == file_sha256(smollm2_path)
    assert leftovers(library) == []


def test_wrong_bytes_are_rejected_deleted_and_never_registered(hub, library, fake_hub, smollm2_path):
    fake_hub.faults.corrupt = True
    with pytest.raises(DownloadVerificationFailed, match="does not match"):
        hub.download(REPO, smollm2_path.name)
    assert leftovers(library) == []
    assert [m.source for m in library.list()] == [ModelSource.STARTER]
    assert not any(p.is_file() for p in library.paths.models.rglob("*"))


def test_a_catalog_checksum_that_disagrees_with_the_hub_stops_before_downloading(hub, fake_hub, smollm2_path):
    with pytest.raises(DownloadVerificationFailed, match="not the file slmchat expects"):
        hub.download(REPO, smollm2_path.name, expected_sha256="0" * 64)
    assert fake_hub.downloads_of(smollm2_path.name) == []


def test_cancel_during_a_stalled_connection_ends_promptly_and_cleans_up(hub, library, fake_hub, smollm2_path):
    fake_hub.faults.stall_at = 4 * CHUNK_SIZE
    control = DownloadControl()
    thread, outcome = run_in_thread(lambda: hub.download(REPO, smollm2_path.name, control=control))
    assert fake_hub.stalled.wait(30)
    started = time.monotonic()
    control.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive(), "cancel did not end a stalled download"
    assert time.monotonic() - started < 5  # the read timeout alone would take 10 s, retries a minute
    assert isinstance(outcome.get("error"), DownloadCancelled)
    assert leftovers(library) == []
    assert library.find_download(REPO, smollm2_path.name) is None


def test_pause_keeps_the_bytes_and_the_next_download_continues_from_them(hub, library, fake_hub, smollm2_path):
    control = DownloadControl()

    with pytest.raises(DownloadPaused):  # paused at the first progress report
        hub.download(REPO, smollm2_path.name, control=control, on_progress=lambda progress: control.pause())
    kept = library.partial(REPO, smollm2_path.name).size()
    assert 0 < kept < smollm2_path.stat().st_size
    assert library.find_download(REPO, smollm2_path.name) is None

    fake_hub.requests.clear()
    model = hub.download(REPO, smollm2_path.name)
    (get,) = fake_hub.downloads_of(smollm2_path.name)
    assert get.headers["range"] == f"bytes={kept}-"
    assert get.body_bytes == smollm2_path.stat().st_size - kept
    assert file_sha256(model.path) == file_sha256(smollm2_path)


def test_pause_during_a_stall_keeps_the_partial(hub, library, fake_hub, smollm2_path):
    stall = 4 * CHUNK_SIZE
    fake_hub.faults.stall_at = stall
    control = DownloadControl()
    partial = library.partial(REPO, smollm2_path.name)
    thread, outcome = run_in_thread(lambda: hub.download(REPO, smollm2_path.name, control=control))
    wait_for(lambda: fake_hub.stalled.is_set() and partial.size() == stall)
    control.pause()
    thread.join(timeout=10)
    assert isinstance(outcome.get("error"), DownloadPaused)
    assert partial.size() == stall and partial.load_state() is not None


def test_a_second_download_of_the_same_file_is_refused_while_one_runs(hub, fake_hub, smollm2_path):
    fake_hub.faults.stall_at = CHUNK_SIZE
    control = DownloadControl()
    thread, _ = run_in_thread(lambda: hub.download(REPO, smollm2_path.name, control=control))
    assert fake_hub.stalled.wait(30)
    try:
        with pytest.raises(DownloadAlreadyRunning):
            hub.download(REPO, smollm2_path.name)
    finally:
        control.cancel()
        thread.join(timeout=10)


def test_a_file_larger_than_the_free_space_is_refused_before_any_byte_is_fetched(hub, fake_hub, smollm2_path):
    fake_hub.faults.reported_size = 10**15  # a petabyte
    with pytest.raises(NotEnoughDiskSpace, match="free disk space"):
        hub.download(REPO, smollm2_path.name)
    assert fake_hub.downloads_of(smollm2_path.name) == []


def test_the_disk_check_counts_only_the_bytes_still_missing(library, fake_hub, smollm2_path):
    size = smollm2_path.stat().st_size
    tight = Hub(library, endpoint=fake_hub.url, disk_free=lambda folder: size // 2)
    with pytest.raises(NotEnoughDiskSpace):
        tight.download(REPO, smollm2_path.name)
    assert fake_hub.downloads_of(smollm2_path.name) == []


def test_search_and_file_listing_come_from_the_hub(hub, fake_hub, smollm2_path):
    fake_hub.add_repo(
        "other-org/Tiny-GGUF",
        {
            "tiny-Q4_K_M.gguf": smollm2_path,
            "tiny.IQ4_XS.gguf": smollm2_path,
            "README.md": smollm2_path,
            "../escape.gguf": smollm2_path,
            "nested/dir.gguf": smollm2_path,
            "/etc/absolute.gguf": smollm2_path,
        },
        downloads=5,
    )
    found = hub.search_gguf_repos("gguf", limit=10)
    assert [r.repo_id for r in found] == [REPO, "other-org/Tiny-GGUF"]  # most downloaded first
    assert [r.repo_id for r in hub.search_gguf_repos("tiny")] == ["other-org/Tiny-GGUF"]

    files = hub.list_gguf_files("other-org/Tiny-GGUF")
    assert [(f.filename, f.quantization) for f in files] == [("tiny-Q4_K_M.gguf", "Q4_K_M"), ("tiny.IQ4_XS.gguf", "IQ4_XS")]
    assert {f.size for f in files} == {smollm2_path.stat().st_size}
    assert {f.sha256 for f in files} == {file_sha256(smollm2_path)}
    search = next(r for r in fake_hub.requests if r.path == "/api/models")
    assert search.query["filter"] == ["gguf"]


@pytest.mark.parametrize(
    ("repo_id", "filename"),
    [
        (REPO, "../../etc/passwd.gguf"),
        (REPO, "/etc/absolute.gguf"),
        (REPO, "sub/dir/model.gguf"),
        (REPO, "sub\\model.gguf"),
        (REPO, "evil\x00.gguf"),
        (REPO, ".."),
        (REPO, "model.bin"),
        (REPO, "C:model.gguf"),
        ("test-org/../other", "model.gguf"),
        ("../test-org", "model.gguf"),
        ("/abs/repo", "model.gguf"),
        ("owner/name/extra", "model.gguf"),
        ("owner\\name", "model.gguf"),
        ("owner/na\x00me", "model.gguf"),
        ("justname", "model.gguf"),
    ],
)
def test_hostile_names_are_rejected_before_any_request(hub, fake_hub, repo_id, filename):
    with pytest.raises(UnsafeName):
        hub.download(repo_id, filename)
    assert fake_hub.requests == []


def test_hostile_repo_names_are_rejected_for_listing_too(hub, fake_hub):
    with pytest.raises(UnsafeName):
        hub.list_gguf_files("../../api/models")
    assert fake_hub.requests == []


def test_a_gated_repo_needs_the_right_token_which_is_never_logged(library, fake_hub, smollm2_path, caplog):
    secret = "hf_secret_token_1234567890"
    fake_hub.add_repo("gated-org/Gated-GGUF", {smollm2_path.name: smollm2_path}, token=secret)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubAccessDenied, match="licence"):
        Hub(library, endpoint=fake_hub.url).download("gated-org/Gated-GGUF", smollm2_path.name)
    with pytest.raises(HubAccessDenied):
        Hub(library, endpoint=fake_hub.url, token="hf_wrong").download("gated-org/Gated-GGUF", smollm2_path.name)
    model = Hub(library, endpoint=fake_hub.url, token=secret).download("gated-org/Gated-GGUF", smollm2_path.name)
    assert model.usable
    assert secret not in caplog.text


def test_the_token_goes_to_the_hub_but_never_to_the_cdn_it_redirects_to(library, fake_hub, smollm2_path):
    secret = "hf_secret_token_1234567890"
    fake_hub.add_repo("gated-org/Gated-GGUF", {smollm2_path.name: smollm2_path}, token=secret)
    fake_hub.cdn = f"http://localhost:{fake_hub.port}"  # another origin, as the real hub's CDN is
    model = Hub(library, endpoint=fake_hub.url, token=secret).download("gated-org/Gated-GGUF", smollm2_path.name)
    assert file_sha256(model.path) == file_sha256(smollm2_path)
    head, get = fake_hub.requests
    assert head.method == "HEAD" and head.headers["authorization"] == f"Bearer {secret}"
    assert get.method == "GET" and get.path.startswith("/cdn/") and "authorization" not in get.headers


def test_no_stored_token_is_sent_unless_given(hub, fake_hub, smollm2_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    hub.download(REPO, smollm2_path.name)
    assert all("authorization" not in r.headers for r in fake_hub.requests)


def test_missing_repo_or_file_is_reported_plainly(hub, smollm2_path):
    with pytest.raises(HubNotFound):
        hub.download("test-org/No-Such-Repo", smollm2_path.name)
    with pytest.raises(HubNotFound):
        hub.download(REPO, "missing.Q4_K_M.gguf")
    with pytest.raises(HubNotFound):
        hub.list_gguf_files("test-org/No-Such-Repo")


def test_an_unreachable_hub_is_reported_at_once(library, smollm2_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    offline = Hub(library, endpoint=closed)
    started = time.monotonic()
    with pytest.raises(HubUnreachable, match="internet"):
        offline.download(REPO, smollm2_path.name)
    with pytest.raises(HubUnreachable):
        offline.list_gguf_files(REPO)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("filename", "quantization"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2-0_5b-instruct-q8_0.gguf", "Q8_0"),
        ("gemma-2-2b-it-IQ3_XXS.gguf", "IQ3_XXS"),
        ("Phi-4-Q3_K_XL.gguf", "Q3_K_XL"),
        ("model-f16.gguf", "F16"),
        ("model.gguf", None),
    ],
)
def test_quantization_is_read_from_the_file_name(filename, quantization):
    assert guess_quantization(filename) == quantization


# --- what a file on the hub needs, from its header alone --------------------------------------
GEMMA_REPO = "test-org/gemma-3-270m-GGUF"
ROOMY = hardware.Machine(total_ram=64 * 1000**3, available_ram=48 * 1000**3, physical_cores=8)
SMALL = hardware.Machine(total_ram=256 * 1024**2, available_ram=128 * 1024**2, physical_cores=2)


def fit_of_downloaded(path: Path, machine: hardware.Machine) -> hardware.Fit:
    """The independent path: the whole file on disk, checked and estimated like any local model."""
    info = check_gguf(path)
    return hardware.fit(hardware.estimate_memory(info, min(4096, info.context_length)), machine)


def test_fit_labels_of_listed_files_equal_those_of_the_downloaded_files(hub, fake_hub, smollm2_path, gemma_path):
    fake_hub.add_repo(GEMMA_REPO, {gemma_path.name: gemma_path})
    for repo, name in ((REPO, smollm2_path.name), (GEMMA_REPO, gemma_path.name)):
        downloaded = hub.download(repo, name).path
        for machine in (ROOMY, SMALL):
            (listed,) = hub.list_gguf_files(repo, machine=machine)
            assert listed.fit == fit_of_downloaded(downloaded, machine)
            assert listed.fit_problem is None
    assert hub.list_gguf_files(REPO, machine=ROOMY)[0].fit.label is hardware.FitLabel.FITS
    assert hub.list_gguf_files(REPO, machine=SMALL)[0].fit.label is hardware.FitLabel.WONT_FIT


def test_the_header_fetch_reads_a_small_part_of_the_file_once(hub, fake_hub, smollm2_path):
    hub.list_gguf_files(REPO, machine=ROOMY)
    size = smollm2_path.stat().st_size
    assert 0 < fake_hub.bytes_served(smollm2_path.name) < 0.2 * size  # SmolLM2's header holds a 49k vocabulary
    assert all(g.headers["range"].startswith("bytes=0-") for g in fake_hub.downloads_of(smollm2_path.name))

    fake_hub.requests.clear()
    again = hub.list_gguf_files(REPO, machine=SMALL)  # another machine, same commit: no header fetched again
    assert again[0].fit.label is hardware.FitLabel.WONT_FIT
    assert [r.path for r in fake_hub.requests] == [f"/api/models/{REPO}"]


def test_a_big_header_is_fetched_in_growing_ranges_without_fetching_a_byte_twice(hub, fake_hub, gemma_path):
    """Gemma's 262k-token vocabulary does not fit the first 2 MiB."""
    fake_hub.add_repo(GEMMA_REPO, {gemma_path.name: gemma_path})
    info = hub.remote_info(GEMMA_REPO, gemma_path.name)
    gets = fake_hub.downloads_of(gemma_path.name)
    assert len(gets) >= 2
    expected_start = 0
    for get in gets:
        start, end = (int(x) for x in get.headers["range"].removeprefix("bytes=").split("-"))
        assert start == expected_start and get.body_bytes == end - start + 1
        expected_start = end + 1
    assert fake_hub.bytes_served(gemma_path.name) < 0.2 * gemma_path.stat().st_size
    assert info.tensor_bytes == check_gguf(gemma_path).tensor_bytes


def test_a_server_that_ignores_range_still_gives_the_header(hub, fake_hub, gemma_path):
    fake_hub.add_repo(GEMMA_REPO, {gemma_path.name: gemma_path})
    fake_hub.faults.ignore_range = True
    info = hub.remote_info(GEMMA_REPO, gemma_path.name)
    assert info == dataclasses.replace(check_gguf(gemma_path), path=Path(gemma_path.name))
    assert {g.headers.get("range", "")[:6] for g in fake_hub.downloads_of(gemma_path.name)} == {"bytes="}


def sparse_larger_copy(source: Path, target: Path, extra: int) -> Path:
    """The same header with `extra` more bytes of weights (a sparse file: no disk used)."""
    shutil.copyfile(source, target)
    with target.open("r+b") as handle:
        handle.truncate(source.stat().st_size + extra)
    return target


def test_each_file_of_a_repo_is_labelled_by_its_own_size(hub, fake_hub, smollm2_path, tmp_path):
    """One header per repo; a larger quantization of the same model needs more memory."""
    larger = sparse_larger_copy(smollm2_path, tmp_path / "SmolLM2-135M-Instruct.F16.gguf", 1000**3)
    fake_hub.add_repo("test-org/Two-GGUF", {smollm2_path.name: smollm2_path, larger.name: larger})
    machine = hardware.Machine(total_ram=10**9, available_ram=10**9, physical_cores=2)

    small, big = hub.list_gguf_files("test-org/Two-GGUF", machine=machine)

    assert len([g for g in fake_hub.requests if g.method == "GET" and "/resolve/" in g.path]) == 1
    assert big.fit.estimate.weights - small.fit.estimate.weights == 1000**3
    assert small.fit.estimate.weights == check_gguf(smollm2_path).tensor_bytes
    assert (small.fit.label, big.fit.label) == (hardware.FitLabel.FITS, hardware.FitLabel.WONT_FIT)


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
        ("SmolLM2-135M-Instruct-F16.gguf", "smollm2-135m-instruct"),
        ("Llama-3.2-1B-Instruct-Q4_K_M-00001-of-00002.gguf", "llama-3-2-1b-instruct"),
        ("Llama-3.2-1B-Instruct-Q8_0.gguf", "llama-3-2-1b-instruct"),
        ("Llama-3.2-3B-Instruct-Q8_0.gguf", "llama-3-2-3b-instruct"),
        ("qwen2-0_5b-instruct-q8_0.gguf", "qwen2-0-5b-instruct"),
        ("model.gguf", "model"),
    ],
)
def test_files_of_one_model_share_a_stem_whatever_their_quantization_or_split(filename, stem):
    assert model_stem(filename) == stem


@pytest.mark.parametrize(("filename", "part"), [
    ("Llama-3.2-1B-Instruct-Q4_K_M-00002-of-00003.gguf", (2, 3)),
    ("Llama-3.2-1B-Instruct-Q4_K_M-00001-of-00001.gguf", None),  # one whole file, named as a split
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", None),
])
def test_only_names_of_two_or_more_parts_are_splits(filename, part):
    assert split_part(filename) == part


def test_a_repo_of_several_models_labels_each_file_from_its_own_models_header(
    hub, fake_hub, smollm2_path, gemma_path, tmp_path
):
    """Two models, a second quantization of one of them and a vision projector in one repo."""
    larger = sparse_larger_copy(smollm2_path, tmp_path / "SmolLM2-135M-Instruct.F16.gguf", 1000**3)
    projector = "mmproj-SmolLM2-135M-f16.gguf"
    fake_hub.add_repo("test-org/Mixed-GGUF", {smollm2_path.name: smollm2_path, gemma_path.name: gemma_path,
                                              larger.name: larger, projector: smollm2_path})

    listed = {f.filename: f for f in hub.list_gguf_files("test-org/Mixed-GGUF", machine=ROOMY)}

    assert sorted(listed) == sorted([smollm2_path.name, gemma_path.name, larger.name])  # no projector
    assert listed[smollm2_path.name].fit == fit_of_downloaded(smollm2_path, ROOMY)
    assert listed[gemma_path.name].fit == fit_of_downloaded(gemma_path, ROOMY)
    weights = {name: listed[name].fit.estimate.weights for name in listed}
    assert weights[larger.name] - weights[smollm2_path.name] == 1000**3  # labelled from SmolLM2's header
    assert fake_hub.downloads_of(larger.name) == fake_hub.downloads_of(projector) == []  # two headers read


@pytest.fixture(scope="module")
def smollm2_in_three_parts(tmp_path_factory, smollm2_path) -> list[Path]:
    """SmolLM2 split by gguf's own writer the way llama.cpp's gguf-split does: "-0000N-of-00003.gguf"."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(smollm2_path)
    target = tmp_path_factory.mktemp("split") / "SmolLM2-135M-Instruct-Q4_1.gguf"
    writer = GGUFWriter(target, str(reader.get_field("general.architecture").contents()),
                        split_max_tensors=-(-len(reader.tensors) // 3))
    for field in reader.fields.values():
        if not field.name.startswith("GGUF.") and field.name != "general.architecture":
            sub_type = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), field.types[0], sub_type)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file(target)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    parts = sorted(target.parent.glob("*-of-00003.gguf"))
    assert len(parts) == 3
    return parts


def test_a_split_model_is_one_choice_sized_as_its_parts_that_says_it_cannot_be_downloaded_yet(
    hub, fake_hub, smollm2_path, smollm2_in_three_parts
):
    files = {part.name: part for part in reversed(smollm2_in_three_parts)}  # in no particular order
    fake_hub.add_repo("test-org/Split-GGUF", files | {smollm2_path.name: smollm2_path})

    listed = hub.list_gguf_files("test-org/Split-GGUF", machine=ROOMY)

    (split,) = [f for f in listed if f.parts]
    assert split.filename == smollm2_in_three_parts[0].name  # the part llama.cpp opens
    assert split.parts == tuple(part.name for part in smollm2_in_three_parts)
    assert split.size == sum(part.stat().st_size for part in smollm2_in_three_parts)
    assert (split.quantization, split.sha256, split.fit) == ("Q4_1", None, None)
    assert "split into 3 files" in split.fit_problem and "cannot download" in split.fit_problem
    assert split.fit_text == "split into 3 files: not supported"  # what the CLI and the hub tab show
    (single,) = [f for f in listed if not f.parts]
    assert single.fit == fit_of_downloaded(smollm2_path, ROOMY)
    assert all(fake_hub.downloads_of(part.name) == [] for part in smollm2_in_three_parts)


def test_downloading_a_part_of_a_split_model_is_refused_before_any_request(
    hub, fake_hub, library, smollm2_in_three_parts
):
    """Each part alone would be registered as a model; parts 2 and 3 are not even valid on their own."""
    fake_hub.add_repo("test-org/Split-GGUF", {part.name: part for part in smollm2_in_three_parts})
    for part in smollm2_in_three_parts:
        with pytest.raises(UnsupportedModel, match="split into 3 files"):
            hub.download("test-org/Split-GGUF", part.name)
        assert library.find_download("test-org/Split-GGUF", part.name) is None
    assert fake_hub.requests == []


def test_a_hostile_header_on_the_hub_gets_the_same_typed_outcome_as_on_disk(hub, fake_hub, smollm2_path, tmp_path):
    for make in hostile_gguf.ALL:
        hostile = make(smollm2_path, tmp_path, weights=False)
        repo = f"hostile/{make.__name__.replace('_', '-')}"
        fake_hub.add_repo(repo, {"model.gguf": hostile.path})
        if hostile.error is None:
            remote = hub.remote_info(repo, "model.gguf")
            assert (remote.is_chat, remote.template_problem) == (check_gguf(hostile.path).is_chat,
                                                                 check_gguf(hostile.path).template_problem)
            continue
        with pytest.raises(hostile.error) as caught:
            hub.remote_info(repo, "model.gguf")
        # An unknown architecture is told apart on the hub (a listing names it), as a kind of the same error.
        expected = UnsupportedArchitecture if make.__name__ == "unknown_architecture" else hostile.error
        assert type(caught.value) is expected and isinstance(caught.value, hostile.error), make.__name__
        # A listing still works: the files are there, with the reason instead of a label.
        (listed,) = hub.list_gguf_files(repo, machine=ROOMY)
        assert listed.fit is None and listed.fit_problem == str(caught.value)


def test_a_header_larger_than_the_cap_is_refused_after_at_most_the_cap(hub, fake_hub, smollm2_path, tmp_path):
    padding = {f"general.padding{i}": hostile_gguf.value(hostile_gguf.STRING, "x" * (12 << 20)) for i in range(3)}
    bloated = hostile_gguf.rewrite(smollm2_path, tmp_path / "bloated.gguf", set_kv=padding, weights=False)
    fake_hub.add_repo("hostile/bloated", {"model.gguf": bloated})
    with pytest.raises(UnsupportedModel, match="unusually large"):
        hub.remote_info("hostile/bloated", "model.gguf")
    assert fake_hub.bytes_served("model.gguf") <= HEADER_MAX_FETCH


def test_a_truncated_file_on_the_hub_is_reported_as_cut_off(hub, fake_hub, smollm2_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2_path.read_bytes()[: 1 << 20])  # ends inside the vocabulary
    fake_hub.add_repo("hostile/cut", {"model.gguf": cut})
    with pytest.raises(ModelFileDamaged, match="ends early"):
        hub.remote_info("hostile/cut", "model.gguf")


@pytest.mark.parametrize(
    ("repo_id", "filename", "revision"),
    [
        (REPO, "../../etc/passwd.gguf", "main"),
        (REPO, "sub/dir/model.gguf", "main"),
        (REPO, "model.bin", "main"),
        ("test-org/../other", "model.gguf", "main"),
        ("owner/name/extra", "model.gguf", "main"),
        (REPO, "model.gguf", "../../main"),
    ],
)
def test_hostile_names_are_rejected_before_any_header_request(hub, fake_hub, repo_id, filename, revision):
    with pytest.raises(UnsafeName):
        hub.remote_info(repo_id, filename, revision=revision)
    assert fake_hub.requests == []


def test_header_errors_from_the_hub_are_translated(library, hub, fake_hub, smollm2_path):
    with pytest.raises(HubNotFound):
        hub.remote_info(REPO, "missing.Q4_K_M.gguf")
    fake_hub.add_repo("gated-org/Gated-GGUF", {smollm2_path.name: smollm2_path}, token="hf_secret")
    with pytest.raises(HubAccessDenied):
        hub.remote_info("gated-org/Gated-GGUF", smollm2_path.name)
    (listed,) = hub.list_gguf_files("gated-org/Gated-GGUF", machine=ROOMY)  # listed, but no label
    assert listed.fit is None and "gated" in listed.fit_problem
    assert Hub(library, endpoint=fake_hub.url, token="hf_secret").remote_info("gated-org/Gated-GGUF", smollm2_path.name)


def test_the_cli_lists_a_repos_files_with_their_fit(capsys, fake_hub, smollm2_path, monkeypatch):
    from slmchat.cli import main

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setattr(hardware, "detect_machine", lambda: SMALL)
    assert main(["download", REPO]) == 1
    assert f"{smollm2_path.name} (98 MB, Won't fit)" in capsys.readouterr().err
