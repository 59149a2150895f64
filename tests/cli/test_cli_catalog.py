"""`slmchat-cli catalog refresh` against the loopback hub: renamed files, re-uploads, deleted repos, new pins."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import hostile_gguf
import pytest

from slmchat.cli import main
from slmchat.core.models.catalog import load_catalog

if TYPE_CHECKING:
    from hub_server import FakeHub

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "catalog.json"
REPO_135M = "mradermacher/SmolLM2-135M-Instruct-GGUF"
REPO_360M = "mradermacher/SmolLM2-360M-Instruct-GGUF"
REPO_QWEN = "QuantFactory/Qwen2-0.5B-Instruct-GGUF"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pin(item: dict, revision: str, data: Path) -> None:
    item.update(revision=revision, size_bytes=data.stat().st_size, sha256=sha256_of(data), verified=True, unconfirmed=[])
    item.pop("unverified_reason", None)


def file_of(raw: dict, entry_id: str, quant: str) -> dict:
    entry = next(m for m in raw["models"] if m["id"] == entry_id)
    return next(f for f in entry["files"] if f["quant"] == quant)


@pytest.fixture
def world(fake_hub: FakeHub, smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Three catalog models on the hub after a year of changes: a re-upload, a rename, a deleted repo.

    SmolLM2 135M: Q4_K_M pinned, then re-uploaded with new bytes (still the 135M model); Q8_0
    unpinned and on the hub. SmolLM2 360M: Q4_K_M pinned, then renamed; its other files never
    uploaded. Qwen2 0.5B: the whole repo deleted.
    """
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    first_135m = fake_hub.add_repo(REPO_135M, {
        "SmolLM2-135M-Instruct.Q4_K_M.gguf": smollm2_path, "SmolLM2-135M-Instruct.Q8_0.gguf": smollm2_path,
    }).head
    first_360m = fake_hub.add_repo(REPO_360M, {"SmolLM2-360M-Instruct.Q4_K_M.gguf": smollm2_path}).head
    fake_hub.add_repo(REPO_QWEN, {"Qwen2-0.5B-Instruct.Q5_K_M.gguf": smollm2_path})

    raw = json.loads(SHIPPED.read_text(encoding="utf-8"))
    raw["models"] = [m for m in raw["models"] if m["id"] in ("smollm2-135m-instruct", "smollm2-360m-instruct", "qwen2-0.5b-instruct")]
    pin(file_of(raw, "smollm2-135m-instruct", "Q4_K_M"), first_135m, smollm2_path)
    pin(file_of(raw, "smollm2-360m-instruct", "Q4_K_M"), first_360m, smollm2_path)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(raw, indent=1), encoding="utf-8")

    reuploaded = Path(shutil.copy(smollm2_path, tmp_path / "reuploaded.gguf"))
    with reuploaded.open("r+b") as handle:  # new bytes, same model (the tail is tensor data)
        handle.seek(reuploaded.stat().st_size - 16)
        handle.write(b"\x01" * 16)
    new_135m = fake_hub.reupload(REPO_135M, "SmolLM2-135M-Instruct.Q4_K_M.gguf", reuploaded)
    fake_hub.rename(REPO_360M, "SmolLM2-360M-Instruct.Q4_K_M.gguf", "SmolLM2-360M-Instruct-Q4_K_M.gguf")
    fake_hub.delete_repo(REPO_QWEN)
    return {"catalog": catalog, "first_135m": first_135m, "new_135m": new_135m, "first_360m": first_360m,
            "reuploaded": reuploaded}


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def line_for(out: str, entry_id: str, quant: str) -> str:
    (line,) = [row for row in out.splitlines() if f" {entry_id} {quant}:" in row]
    return line


def test_refresh_reports_each_change_plainly_and_changes_nothing_without_write(capsys, world):
    before = world["catalog"].read_bytes()
    code, out, err = run(capsys, "catalog", "refresh", "--catalog", str(world["catalog"]))
    assert code == 1, err  # a deleted repo means some Download fails

    reupload = line_for(out, "smollm2-135m-instruct", "Q4_K_M")
    assert reupload.lstrip().startswith("UPDATE") and "re-uploaded" in reupload and world["new_135m"] in reupload
    assert "pinned at commit" in line_for(out, "smollm2-135m-instruct", "Q8_0")
    renamed = line_for(out, "smollm2-360m-instruct", "Q4_K_M")
    assert "renamed to SmolLM2-360M-Instruct-Q4_K_M.gguf" in renamed and world["first_360m"] in renamed
    assert line_for(out, "smollm2-360m-instruct", "Q6_K").lstrip().startswith("PROBLEM")  # never there, no pin
    deleted = line_for(out, "qwen2-0.5b-instruct", "Q5_K_M")
    assert deleted.lstrip().startswith("PROBLEM") and "repo gone" in deleted and REPO_QWEN in deleted
    assert "run again with --write" in out
    assert world["catalog"].read_bytes() == before


def test_refresh_with_write_repins_reuploads_and_new_files_and_keeps_a_renamed_files_pin(capsys, world, smollm2_path):
    code, out, _ = run(capsys, "catalog", "refresh", "--catalog", str(world["catalog"]), "--write")
    assert code == 1 and "Wrote 2 new pin(s)" in out
    catalog = load_catalog(world["catalog"])
    entry = catalog.get("smollm2-135m-instruct")
    reuploaded = entry.file_for("Q4_K_M")
    assert (reuploaded.revision, reuploaded.sha256, reuploaded.verified) == (
        world["new_135m"], sha256_of(world["reuploaded"]), True)
    q8 = entry.file_for("Q8_0")
    assert q8.verified and (q8.size_bytes, q8.sha256) == (smollm2_path.stat().st_size, sha256_of(smollm2_path))
    assert any(world["new_135m"] in source and "/api/models/" in source for source in entry.sources)
    renamed = catalog.get("smollm2-360m-instruct").file_for("Q4_K_M")
    assert renamed.revision == world["first_360m"]  # the old commit still serves the old name
    # Run again: the new pins hold, only the standing problems remain.
    code, out, _ = run(capsys, "catalog", "refresh", "--catalog", str(world["catalog"]))
    assert "is pinned at the newest commit" in line_for(out, "smollm2-135m-instruct", "Q4_K_M")
    assert "can be updated" not in out


def test_a_reupload_that_is_another_model_is_reported_and_never_pinned(capsys, world, fake_hub, smollm2_path, tmp_path):
    alien = hostile_gguf.unknown_architecture(smollm2_path, tmp_path).path
    fake_hub.reupload(REPO_135M, "SmolLM2-135M-Instruct.Q8_0.gguf", alien)
    code, out, _ = run(capsys, "catalog", "refresh", "--catalog", str(world["catalog"]), "--write")
    line = line_for(out, "smollm2-135m-instruct", "Q8_0")
    assert line.lstrip().startswith("PROBLEM") and "wrong model" in line and "frobnicator" in line
    assert not load_catalog(world["catalog"]).get("smollm2-135m-instruct").file_for("Q8_0").verified
