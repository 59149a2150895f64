"""`slmchat-cli models | download | import | remove` against the loopback hub and real GGUF files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import hostile_gguf
import pytest

from slmchat.cli import main
from slmchat.core.gguf.check import check_gguf
from slmchat.core.models import catalog as catalog_module
from slmchat.core.models import hardware
from slmchat.core.models.catalog import RECOMMEND_CONTEXT, load_catalog

if TYPE_CHECKING:
    from hub_server import FakeHub


REPO = "test-org/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def hub_env(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    return fake_hub


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def machine_with_ram(n_bytes: int) -> hardware.Machine:
    return hardware.Machine(total_ram=n_bytes, available_ram=n_bytes, physical_cores=2)


def rows_of(out: str, model_id: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip().startswith(model_id + " ")]


def test_models_labels_the_starter_from_its_real_gguf_metadata(capsys, monkeypatch, smollm2_path):
    info = check_gguf(smollm2_path)
    need = hardware.estimate_memory(info, min(RECOMMEND_CONTEXT, info.context_length)).total
    starter_id = "smollm2-135m-instruct.q4_1"

    # RAM just above and just below what the file's own metadata says loading it needs.
    monkeypatch.setattr(hardware, "detect_machine", lambda: machine_with_ram(int(need / 0.85)))
    code, roomy, _ = run(capsys, "models")
    assert code == 0 and "Fits" in rows_of(roomy, starter_id)[0]
    monkeypatch.setattr(hardware, "detect_machine", lambda: machine_with_ram(int(need * 0.8)))
    _, cramped, _ = run(capsys, "models")
    assert "Won't fit" in rows_of(cramped, starter_id)[0]

    catalog_ids = [entry.id for entry in load_catalog()]
    assert all(rows_of(roomy, model_id) for model_id in catalog_ids)
    assert "can't run" in rows_of(roomy, "mobilebert-uncased")[0]


def test_download_by_repo_and_file_shows_progress_and_registers_the_model(capsys, hub_env, smollm2_path):
    code, out, err = run(capsys, "download", REPO, smollm2_path.name)
    assert code == 0, err
    assert "(100%)" in err and "98 MB" in err
    assert out.startswith(f"Downloaded {smollm2_path.name} (verified) as ")
    model_id = out.split(" as ")[-1].strip()
    _, listing, _ = run(capsys, "models")
    assert REPO in rows_of(listing, model_id)[0]


def test_download_by_catalog_id_fetches_the_catalog_file(capsys, hub_env, smollm2_path):
    # A catalog model whose file has no pinned checksum, so the test bytes can stand in for it.
    entry, file = next(
        (entry, entry.default_file)
        for entry in load_catalog()
        if entry.supported and entry.default_file and entry.default_file.repo and entry.default_file.sha256 is None
    )
    hub_env.add_repo(file.repo, {file.file: smollm2_path})
    code, _, err = run(capsys, "download", entry.id)
    assert code == 0, err
    (get,) = hub_env.downloads_of(file.file)
    assert get.path == f"/{file.repo}/resolve/main/{file.file}"


def test_download_of_a_repo_without_a_file_name_lists_its_files(capsys, hub_env, smollm2_path):
    code, _, err = run(capsys, "download", REPO)
    assert code == 1
    assert err.startswith("slmchat: Say which file") and smollm2_path.name in err


def test_failures_are_one_clear_line_and_a_non_zero_exit(capsys, hub_env, smollm2_path):
    hub_env.faults.corrupt = True
    code, _, err = run(capsys, "download", REPO, smollm2_path.name)
    assert code == 1
    (last,) = [line for line in err.splitlines() if line.startswith("slmchat:")]
    assert "does not match" in last and "Traceback" not in err

    code, _, err = run(capsys, "download", "../etc", "passwd.gguf")
    assert code == 1 and err.startswith("slmchat: ") and err.count("\n") == 1

    code, _, err = run(capsys, "remove", "smollm2-135m-instruct.q4_1")
    assert code == 1 and "cannot be removed" in err


def test_import_then_remove_keeps_the_users_own_file(capsys, tmp_path, smollm2_path):
    mine = Path(shutil.copy(smollm2_path, tmp_path / "mine.gguf"))
    code, out, _ = run(capsys, "import", str(mine))
    assert code == 0 and "as mine, used where it is" in out
    code, out, _ = run(capsys, "remove", "mine")
    assert code == 0 and "left in place" in out
    assert mine.is_file()


def test_import_with_copy_then_remove_deletes_only_the_copy(capsys, tmp_path, smollm2_path, slmchat_home):
    mine = Path(shutil.copy(smollm2_path, tmp_path / "mine.gguf"))
    code, out, _ = run(capsys, "import", "--copy", str(mine))
    assert code == 0 and "copied into slmchat's folder" in out
    (copy,) = (slmchat_home / "data" / "models").rglob("*.gguf")
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(mine.read_bytes()).digest()
    code, out, _ = run(capsys, "remove", "mine")
    assert code == 0 and "deleted its file" in out
    assert not copy.exists() and mine.is_file()


def test_importing_something_that_is_not_a_model_fails_plainly(capsys, tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("hello")
    code, _, err = run(capsys, "import", str(bogus))
    assert code == 1 and err.startswith("slmchat: ")


def test_download_by_catalog_id_fetches_the_pinned_commit_not_main(capsys, hub_env, smollm2_path, tmp_path, monkeypatch):
    raw = json.loads(catalog_module.default_path().read_text(encoding="utf-8"))
    entry = next(m for m in raw["models"] if m["id"] == "smollm2-135m-instruct")
    item = next(f for f in entry["files"] if f["quant"] == entry["default_quant"])
    repo = hub_env.add_repo(item["repo"], {item["file"]: smollm2_path})
    pinned_at = repo.head
    item.update(revision=pinned_at, size_bytes=smollm2_path.stat().st_size, verified=True, unconfirmed=[],
                sha256=hashlib.sha256(smollm2_path.read_bytes()).hexdigest())
    entry["sources"].append(f"test pin at {pinned_at}")
    (tmp_path / "catalog.json").write_text(json.dumps(raw), encoding="utf-8")
    monkeypatch.setattr(catalog_module, "default_path", lambda: tmp_path / "catalog.json")
    hub_env.reupload(item["repo"], item["file"], hostile_gguf.unknown_architecture(smollm2_path, tmp_path).path)

    code, out, err = run(capsys, "download", "smollm2-135m-instruct")
    assert code == 0, err
    (get,) = hub_env.downloads_of(item["file"])
    assert get.path == f"/{item['repo']}/resolve/{pinned_at}/{item['file']}"


def test_importing_another_model_under_a_catalog_files_name_is_refused(capsys, tmp_path, smollm2_path, slmchat_home):
    impostor = Path(shutil.copy(smollm2_path, tmp_path / "SmolLM2-360M-Instruct.Q4_K_M.gguf"))
    code, _, err = run(capsys, "import", str(impostor))
    assert code == 1 and "named like SmolLM2 360M Instruct but holds a different model" in err
    _, listing, _ = run(capsys, "models")
    assert "SmolLM2-360M" not in listing.split("Catalog")[0]
    honest = Path(shutil.copy(smollm2_path, tmp_path / "SmolLM2-135M-Instruct.Q8_0.gguf"))  # same model, other quant name
    code, out, err = run(capsys, "import", str(honest))
    assert code == 0, err
