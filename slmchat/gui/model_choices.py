"""Models as the user sees them: display names, fit labels for this machine, the recommendation,
and models on the servers the user added, marked with the computer they run on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slmchat.core.errors import SlmchatError
from slmchat.core.models import hardware
from slmchat.core.models.catalog import RECOMMEND_CONTEXT, Catalog, CatalogEntry
from slmchat.core.models.library import LibraryModel, ModelLibrary, ModelSource
from slmchat.core.process.remote_client import ModelServer, RemoteModel
from slmchat.gui.downloads import DownloadKey, format_size
from slmchat.gui.model_bar import ModelChoice
from slmchat.gui.welcome import Recommendation

FIT_PROPERTY = {  # FitLabel value -> the `fit` property style.qss colours
    hardware.FitLabel.FITS.value: "fits",
    hardware.FitLabel.MAY_BE_SLOW.value: "slow",
    hardware.FitLabel.WONT_FIT.value: "nofit",
}


def catalog_entry(model: LibraryModel, catalog: Catalog | None) -> CatalogEntry | None:
    """The catalog entry a model file came from (a download of it, or the bundled starter)."""
    if catalog is None:
        return None
    if model.repo_id and model.filename:
        found = catalog.find_file(model.repo_id, model.filename)
        return found[0] if found else None
    if model.source is ModelSource.STARTER:
        return next((e for e in catalog if e.bundled_file and e.bundled_file.file == model.path.name), None)
    return None


def display_name(model: LibraryModel, catalog: Catalog | None = None) -> str:
    """The catalog's name when the file is from the catalog, else the GGUF's own name."""
    entry = catalog_entry(model, catalog)
    if entry is not None:
        return entry.display_name
    name = model.info.name if model.info and model.info.name else model.path.stem
    if model.info and model.info.quantization and model.info.quantization not in name:
        name = f"{name} ({model.info.quantization})"
    return name


def model_fit(model: LibraryModel, machine: hardware.Machine, n_ctx: int) -> hardware.Fit | None:
    if model.info is None:
        return None
    context = min(n_ctx, model.info.context_length or n_ctx)
    return hardware.fit(hardware.estimate_memory(model.info, context), machine)


def model_choices(models: list[LibraryModel], machine: hardware.Machine | None, n_ctx: int,
                  catalog: Catalog | None = None) -> list[ModelChoice]:
    """One entry per model; fit labels once the machine is known (it is detected off the GUI thread)."""
    choices = []
    for model in models:
        if model.info is None:
            choices.append(ModelChoice(model.id, display_name(model, catalog), "Can't be used",
                                       model.problem or "", usable=False))
            continue
        fit = model_fit(model, machine, n_ctx) if machine else None
        origin = "comes with slmchat" if model.source is ModelSource.STARTER else model.source.value
        detail = f"{model.info.file_size / 1e9:.2f} GB file, {origin}."
        if fit is not None:
            detail += f" {fit.reason}"
        choices.append(ModelChoice(model.id, display_name(model, catalog), fit.label.text if fit else "", detail))
    return choices


def server_label(server: ModelServer, servers: Sequence[ModelServer]) -> str:
    """The computer a server runs on, with its port only when another added server shares it."""
    shared = sum(other.host == server.host for other in servers) > 1
    return server.where if shared else server.host


def remote_name(model: RemoteModel, servers: Sequence[ModelServer]) -> str:
    """The name shown in the switcher and stored with each reply: "llama3:70b — on 192.168.1.20"."""
    return f"{model.name} — on {server_label(model.server, servers)}"


def remote_choices(servers: Sequence[ModelServer],
                   listings: Mapping[str, Sequence[RemoteModel] | str | None]) -> list[ModelChoice]:
    """The models of each added server (by URL: its models, the error that kept them, or None while
    asked); a server that cannot be used shows as one greyed entry saying why."""
    choices = []
    for server in servers:
        listing = listings.get(server.url)
        label = server_label(server, servers)
        if listing is None or isinstance(listing, str):
            fit = "Looking…" if listing is None else "Not reachable"
            choices.append(ModelChoice(f"remote:{server.url}", f"Models on {label}", fit, listing or "",
                                       usable=False))
            continue
        detail = (f"Runs on the model server at {server.url}, not on this computer: what you write in "
                  "this chat is sent there.")
        choices += [ModelChoice(model.id, remote_name(model, servers), "", detail) for model in listing]
    return choices


def entry_fit(entry: CatalogEntry, machine: hardware.Machine | None) -> hardware.Fit | None:
    shape = entry.model_shape()
    if machine is None or shape is None:
        return None
    n_ctx = min(RECOMMEND_CONTEXT, entry.context_length or RECOMMEND_CONTEXT)
    return hardware.fit(hardware.estimate_memory(shape, n_ctx), machine)


def recommendation(catalog: Catalog | None, machine: hardware.Machine | None,
                   library: ModelLibrary) -> tuple[DownloadKey, Recommendation] | None:
    """The best catalog chat model for this machine, for the welcome; None if the user has it."""
    if catalog is None or machine is None:
        return None
    try:
        entry = catalog.recommend(machine)
    except SlmchatError:
        return None
    file = entry.default_file
    if file is None or file.repo is None or library.find_download(file.repo, file.file):
        return None
    fit = entry_fit(entry, machine)
    rec = Recommendation(
        name=entry.display_name, good_for=entry.description,
        size=f"{format_size(file.best_size)} download" if file.best_size else "",
        fit=fit.label.text if fit else "", fit_key=fit.label.value if fit else "",
        reason=fit.reason if fit else "", sha256=file.sha256 or "",
    )
    return DownloadKey(file.repo, file.file), rec
