"""The curated model list: it loads, every entry is complete, and a damaged list is refused."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from slmchat.core.gguf.check import check_gguf
from slmchat.core.gguf.tables import SUPPORTED_ARCHITECTURES
from slmchat.core.models import catalog as cat
from slmchat.core.models import hardware
from slmchat.core.models.catalog import (
    CatalogError,
    ModelRole,
    load_catalog,
    parse_catalog,
)
from slmchat.core.models.hardware import GIB, GPU, Backend, FitLabel, Machine

CATALOG_PATH = Path(__file__).resolve().parents[3] / "assets" / "catalog.json"
LINE_UP_FAMILIES = {
    "SmolLM2", "SmolLM3", "Qwen2", "Qwen3", "Llama 3.2", "Gemma 2", "Gemma 3", "Phi-3.5", "Phi-4",
    "Mistral Nemo", "T5", "GPT-2", "MiniLM", "DistilBERT", "TinyBERT", "MobileBERT",
}


@pytest.fixture(scope="module")
def catalog() -> cat.Catalog:
    return load_catalog()


@pytest.fixture()
def raw() -> dict:
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


def test_the_shipped_catalog_loads_and_covers_every_family_of_the_line_up(catalog: cat.Catalog) -> None:
    assert catalog.schema_version == cat.SCHEMA_VERSION
    assert {e.family for e in catalog} == LINE_UP_FAMILIES
    sizes = {e.id for e in catalog if e.family in (
        "SmolLM2", "SmolLM3", "Qwen2", "Qwen3", "Llama 3.2", "Gemma 2", "Gemma 3", "Phi-4")}
    assert sizes == {
        "smollm2-135m-instruct", "smollm2-360m-instruct", "smollm2-1.7b-instruct", "smollm3-3b",
        "qwen2-0.5b-instruct", "qwen2-1.5b-instruct", "qwen2-7b-instruct",
        "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b",
        "llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "gemma-2-2b-it", "gemma-2-9b-it",
        "gemma-3-1b-it", "gemma-3-4b-it", "phi-4", "phi-4-mini-instruct",
    }


def test_ids_are_unique_and_lookups_find_them(catalog: cat.Catalog) -> None:
    ids = [e.id for e in catalog]
    assert len(ids) == len(set(ids))
    assert catalog.get("phi-4").display_name.startswith("Phi-4")
    with pytest.raises(KeyError):
        catalog.get("no-such-model")


def test_every_supported_entry_has_its_default_quantization_or_a_conversion_source(catalog: cat.Catalog) -> None:
    for entry in catalog:
        if not entry.supported:
            continue
        assert entry.architecture, entry.id
        if entry.convert_from is None:
            assert entry.default_file is not None, entry.id
            assert entry.default_file.repo or entry.default_file.bundled, entry.id
        else:
            assert entry.files == () or entry.default_file is not None, entry.id


def test_chat_models_default_to_a_4_or_5_bit_file_from_an_ungated_community_repo(catalog: cat.Catalog) -> None:
    for entry in catalog.by_role(ModelRole.CHAT):
        # Q4_K_M, except Qwen2 0.5B, whose only files seen at a known commit are Q5 (see its sources).
        assert entry.default_quant == ("Q5_K_M" if entry.id == "qwen2-0.5b-instruct" else "Q4_K_M"), entry.id
        assert not entry.gated, entry.id
        assert not entry.default_file.repo.startswith(("meta-llama/", "google/", "mistralai/")), entry.id


def test_mobilebert_is_listed_as_unsupported_with_the_reason(catalog: cat.Catalog) -> None:
    mobilebert = catalog.get("mobilebert-uncased")
    assert not mobilebert.supported
    assert "llama.cpp" in mobilebert.unsupported_reason and "MobileBERT" in mobilebert.unsupported_reason
    assert mobilebert.files == ()


def test_roles_come_from_the_allowed_set_and_every_role_is_used(catalog: cat.Catalog) -> None:
    assert {e.role for e in catalog} == set(ModelRole)


def test_unknown_sizes_are_null_and_named_as_unconfirmed(catalog: cat.Catalog) -> None:
    for entry in catalog:
        for f in entry.files:
            if f.size_bytes is None:
                assert "size_bytes" in f.unconfirmed, (entry.id, f.file)
            if f.sha256 is None:
                assert "sha256" in f.unconfirmed, (entry.id, f.file)


def test_every_hub_file_is_pinned_at_a_commit_or_says_why_not(catalog: cat.Catalog) -> None:
    hub_files = [(entry, f) for entry in catalog for f in entry.files if not f.bundled]
    assert len(hub_files) > 40
    for entry, f in hub_files:
        if f.verified:
            assert len(f.revision) == 40 and f.size_bytes and f.sha256 and not f.unconfirmed, (entry.id, f.file)
            # The pin's facts are cited with the commit they were read at.
            assert any(f.revision in source for source in entry.sources), (entry.id, f.file)
        else:
            assert f.unverified_reason, (entry.id, f.file)
        if f.revision is not None:  # a commit without the hash it was read with would pin nothing
            assert f.sha256 is not None, (entry.id, f.file)
    assert catalog.get("llama-3.2-1b-instruct").default_file.verified


def test_no_file_points_at_names_the_lmstudio_qwen2_repo_dropped_after_its_first_commit(catalog: cat.Catalog) -> None:
    assert not any(f.repo == "lmstudio-community/Qwen2-500M-Instruct-GGUF" for e in catalog for f in e.files)
    default = catalog.get("qwen2-0.5b-instruct").default_file
    assert default.revision and default.sha256  # held to the bytes seen at that commit


def test_gated_originals_link_the_terms_the_user_accepts_even_from_an_open_gguf_repo(catalog: cat.Catalog) -> None:
    gated = {e.id for e in catalog if e.gated_terms_url}
    assert gated == {"llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "gemma-2-2b-it", "gemma-2-9b-it",
                     "gemma-3-1b-it", "gemma-3-4b-it", "mistral-nemo-instruct-2407"}
    assert all(not catalog.get(model_id).gated for model_id in gated)  # the download itself needs no token
    assert catalog.get("gemma-2-2b-it").gated_terms_url == "https://ai.google.dev/gemma/terms"


def test_every_supported_entry_names_an_architecture_the_pinned_llama_cpp_runs(catalog: cat.Catalog) -> None:
    architectures = {e.architecture for e in catalog if e.supported}
    assert {"qwen3", "gemma3", "smollm3", "phi3"} <= architectures
    assert architectures <= SUPPORTED_ARCHITECTURES


def test_thinking_models_say_they_think_and_gemma_3_4b_says_it_reads_no_pictures(catalog: cat.Catalog) -> None:
    thinking = [e for e in catalog if e.family in ("Qwen3", "SmolLM3")]
    assert len(thinking) == 4
    assert all("think" in e.description for e in thinking)
    assert not any("think" in e.description for e in catalog if e.family in ("Gemma 3", "Phi-4"))
    assert "text only" in catalog.get("gemma-3-4b-it").description
    # Only the text GGUF is offered, never the separate image encoder.
    assert all(not f.file.startswith("mmproj") for f in catalog.get("gemma-3-4b-it").files)


def test_the_header_check_refuses_a_qwen3_gguf_that_stores_its_output_matrix_a_second_time(
    catalog: cat.Catalog, smollm2_path: Path
) -> None:
    """Qwen3 ties its output to its embedding; some repos' GGUFs store the matrix twice.

    The entry's parameter count is the tied count, so such a file (18% more elements for 1.7B)
    is refused: the entry must name a repo whose files store it once.
    """
    entry = catalog.get("qwen3-1.7b")
    shape = {key: entry.shape[key] for key in ("block_count", "embedding_length", "head_count", "head_count_kv")}
    tied = dataclasses.replace(check_gguf(smollm2_path), architecture="qwen3", **shape,
                               parameter_count=entry.parameters)
    assert cat.header_mismatch(entry, tied) is None
    output_matrix = entry.shape["vocab_size"] * entry.shape["embedding_length"]
    untied = dataclasses.replace(tied, parameter_count=entry.parameters + output_matrix)
    assert "parameters, expected 1,720,574,976" in cat.header_mismatch(entry, untied)


def test_tinybert_is_not_offered_and_its_missing_licence_is_explained(catalog: cat.Catalog) -> None:
    tinybert = catalog.get("tinybert-general-4l-312d")
    assert not tinybert.supported
    assert "safetensors" in tinybert.unsupported_reason and "not trained to compare sentences" in tinybert.unsupported_reason
    assert tinybert.license == "unknown" and "no licence" in tinybert.license_note


def test_minilm_takes_256_tokens_as_its_card_says_not_its_512_positions(catalog: cat.Catalog) -> None:
    assert catalog.get("all-minilm-l6-v2").context_length == 256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"verified": None}, "true/false 'verified'"),
        ({"verified": True, "revision": None, "size_bytes": 1, "sha256": "a" * 64}, "revision verified"),
        ({"verified": True, "revision": "f" * 40, "size_bytes": None}, "exact size and sha256 of verified"),
        ({"verified": True, "revision": "main", "size_bytes": 1, "sha256": "a" * 64}, "40-hex commit"),
        ({"verified": False, "unverified_reason": ""}, "unverified_reason"),
    ],
)
def test_a_pin_missing_one_of_its_facts_is_refused(raw: dict, change: dict, message: str) -> None:
    raw["models"][1]["files"][0].update(change)
    with pytest.raises(CatalogError, match=message):
        parse_catalog(raw)


def test_an_undeclared_licence_without_a_note_is_refused(raw: dict) -> None:
    entry = next(m for m in raw["models"] if m["id"] == "tinybert-general-4l-312d")
    entry["license_note"] = ""
    with pytest.raises(CatalogError, match="license_note"):
        parse_catalog(raw)


def test_the_header_check_tells_the_135m_model_from_the_360m_one(catalog: cat.Catalog, smollm2_path: Path) -> None:
    info = check_gguf(smollm2_path)
    assert cat.header_mismatch(catalog.get("smollm2-135m-instruct"), info) is None
    problem = cat.header_mismatch(catalog.get("smollm2-360m-instruct"), info)
    assert "block_count 30, expected 32" in problem and "expected 361,821,120" in problem
    catalog.check_named_file("SmolLM2-135M-Instruct.Q8_0.gguf", info)  # its own name: accepted
    catalog.check_named_file("my-own-model.gguf", info)  # no catalog name: nothing to compare
    with pytest.raises(cat.WrongModel, match="named like SmolLM2 360M Instruct but holds a different model"):
        catalog.check_named_file("SmolLM2-360M-Instruct.Q4_K_M.gguf", info)


def test_the_bundled_starter_file_matches_the_real_file_byte_for_byte(catalog: cat.Catalog, smollm2_path: Path) -> None:
    bundled = catalog.get("smollm2-135m-instruct").bundled_file
    assert bundled is not None and bundled.quant == "Q4_1" and bundled.file == smollm2_path.name
    assert bundled.size_bytes == smollm2_path.stat().st_size
    assert bundled.sha256 == hashlib.sha256(smollm2_path.read_bytes()).hexdigest()


def test_a_duplicate_id_is_refused_with_its_name(raw: dict) -> None:
    raw["models"].append(copy.deepcopy(raw["models"][0]))
    with pytest.raises(CatalogError, match="smollm2-135m-instruct.*twice"):
        parse_catalog(raw)


def test_a_missing_default_quantization_file_is_refused(raw: dict) -> None:
    entry = next(m for m in raw["models"] if m["id"] == "phi-4")
    entry["files"] = [f for f in entry["files"] if f["quant"] != "Q4_K_M"]
    with pytest.raises(CatalogError, match="'phi-4'.*default quantization 'Q4_K_M'"):
        parse_catalog(raw)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("file", "../../.bashrc.gguf", "safe file name"),
        ("file", "sub/dir/model.gguf", "safe file name"),
        ("repo", "../evil", "safe repo"),
        ("size_bytes", "4.7 GB", "integer byte count"),
        ("sha256", "not-a-hash", "hex sha256"),
    ],
)
def test_unsafe_or_untyped_file_facts_are_refused(raw: dict, field: str, value: str, message: str) -> None:
    raw["models"][1]["files"][0][field] = value
    with pytest.raises(CatalogError, match=message):
        parse_catalog(raw)


def test_a_wrong_schema_version_an_unknown_role_and_a_missing_field_are_refused(raw: dict) -> None:
    with pytest.raises(CatalogError, match="schema version 99"):
        parse_catalog({**raw, "schema_version": 99})
    broken = copy.deepcopy(raw)
    broken["models"][0]["role"] = "astrology"
    with pytest.raises(CatalogError, match="role 'astrology'"):
        parse_catalog(broken)
    broken = copy.deepcopy(raw)
    del broken["models"][0]["license"]
    with pytest.raises(CatalogError, match="lacks license"):
        parse_catalog(broken)


def test_an_unsupported_entry_without_a_reason_is_refused(raw: dict) -> None:
    entry = next(m for m in raw["models"] if m["id"] == "mobilebert-uncased")
    entry["unsupported_reason"] = ""
    with pytest.raises(CatalogError, match="unsupported_reason"):
        parse_catalog(raw)


def test_an_unreadable_catalog_file_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "catalog.json"
    broken.write_text("{ not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(broken)


def _machine(ram_gb: float, *, gpu: GPU | None = None, backend: Backend = Backend.CPU) -> Machine:
    return Machine(
        total_ram=int(ram_gb * GIB), available_ram=int(ram_gb * 0.75 * GIB), physical_cores=4,
        backend=backend, gpus=(gpu,) if gpu else (),
    )


def test_recommend_picks_the_largest_chat_model_that_fits(catalog: cat.Catalog) -> None:
    netbook = catalog.recommend(_machine(2))
    laptop = catalog.recommend(_machine(8))
    workstation = catalog.recommend(
        _machine(32, gpu=GPU("NVIDIA GeForce RTX 4090", 24 * GIB), backend=Backend.CUDA)
    )
    assert netbook.parameters < laptop.parameters < workstation.parameters
    assert netbook.role is laptop.role is workstation.role is ModelRole.CHAT
    # 8 GB laptop without GPU: models over 4 GB of weights are "slow" on CPU, so a mid-size one.
    assert laptop.default_file.best_size < 4 * 1000**3
    assert workstation.id == "phi-4"


def _chat_fit(entry: cat.CatalogEntry, machine: Machine) -> hardware.Fit:
    return hardware.fit(hardware.estimate_memory(entry.model_shape(), cat.RECOMMEND_CONTEXT), machine)


def _sized_chat_models(catalog: cat.Catalog) -> list[cat.CatalogEntry]:
    return [e for e in catalog.by_role(ModelRole.CHAT) if e.supported and e.model_shape() is not None]


def test_recommend_weighs_speed_so_a_two_core_cpu_gets_a_small_model_whatever_its_ram(catalog: cat.Catalog) -> None:
    two_cores = Machine(total_ram=24 * GIB, available_ram=20 * GIB, physical_cores=2)
    chosen = catalog.recommend(two_cores)
    fit = _chat_fit(chosen, two_cores)
    assert fit.label is FitLabel.FITS and fit.tokens_per_second >= hardware.MIN_CHAT_TOKENS_PER_SECOND
    assert chosen.parameters < catalog.get("phi-3.5-mini-instruct").parameters
    # Every larger chat model fits in 20 GB of RAM but would write too slowly on two cores.
    larger = [e for e in _sized_chat_models(catalog) if e.parameters > chosen.parameters]
    assert larger and all(_chat_fit(e, two_cores).label is FitLabel.MAY_BE_SLOW for e in larger)
    assert all(hardware.estimate_memory(e.model_shape(), cat.RECOMMEND_CONTEXT).total < 0.9 * 20 * GIB
               for e in larger)


def test_recommend_gives_more_cores_a_larger_model_and_a_graphics_card_the_largest(catalog: cat.Catalog) -> None:
    ram = {"total_ram": 24 * GIB, "available_ram": 20 * GIB}
    two_cores = catalog.recommend(Machine(**ram, physical_cores=2))
    sixteen_cores = catalog.recommend(Machine(**ram, physical_cores=16))
    card = GPU("NVIDIA GeForce RTX 4090", 24 * GIB)
    cuda_on_two_cores = catalog.recommend(Machine(**ram, physical_cores=2, backend=Backend.CUDA, gpus=(card,)))
    assert two_cores.parameters < sixteen_cores.parameters < cuda_on_two_cores.parameters
    assert cuda_on_two_cores.id == "phi-4"


def test_recommend_on_apple_silicon_uses_the_graphics_chip(catalog: cat.Catalog) -> None:
    mac = Machine(total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=8, backend=Backend.METAL,
                  gpus=(GPU("Apple GPU", hardware.apple_gpu_budget(16 * GIB), unified=True),))
    chosen = catalog.recommend(mac)
    assert _chat_fit(chosen, mac).tokens_per_second is None
    assert chosen.parameters > catalog.recommend(dataclasses.replace(mac, backend=Backend.CPU, gpus=())).parameters


def test_recommend_gives_a_4_gb_graphics_card_qwen3_4b_the_largest_chat_model_that_fits_in_it(
    catalog: cat.Catalog,
) -> None:
    card = GPU("NVIDIA GeForce GTX 1650", 4 * GIB)
    machine = Machine(total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=8, backend=Backend.CUDA,
                      gpus=(card,))
    chosen = catalog.recommend(machine)
    assert chosen.id == "qwen3-4b"
    assert _chat_fit(chosen, machine).label is FitLabel.FITS
    # Every larger chat model (Qwen2 7B upwards) overflows the card and would run on the CPU.
    larger = [e for e in _sized_chat_models(catalog) if e.parameters > chosen.parameters]
    assert larger and all(_chat_fit(e, machine).label is not FitLabel.FITS for e in larger)
    # The card is what earns the 4B: the same laptop without it gets a smaller model.
    assert catalog.recommend(dataclasses.replace(machine, backend=Backend.CPU, gpus=())).parameters < chosen.parameters


def test_find_file_maps_a_hub_file_back_to_its_entry(catalog: cat.Catalog) -> None:
    entry, file = catalog.find_file("bartowski/gemma-2-9b-it-GGUF", "gemma-2-9b-it-Q4_K_M.gguf")
    assert entry.id == "gemma-2-9b-it" and file.quant == "Q4_K_M"
    assert catalog.find_file("bartowski/gemma-2-9b-it-GGUF", "nope.gguf") is None
