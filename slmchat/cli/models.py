"""`slmchat-cli models | download | import | remove`: the model library and the hub, headless."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

from slmchat.core.errors import DownloadError, UnknownModel
from slmchat.core.gguf.check import GGUFInfo
from slmchat.core.models import hardware
from slmchat.core.models.catalog import (
    RECOMMEND_CONTEXT,
    Catalog,
    CatalogEntry,
    load_catalog,
)
from slmchat.core.models.hub import DownloadProgress, Hub
from slmchat.core.models.library import LibraryModel, ModelLibrary, ModelSource
from slmchat.paths import Paths

TOKEN_ENV = "HF_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("models", help="the catalog and the models on this computer, with fit labels")
    listing.set_defaults(func=_models)

    download = subparsers.add_parser(
        "download",
        help="download a catalog model (ID) or any GGUF file (REPO FILE) from Hugging Face",
        description=f"Progress goes to stderr. Ctrl-C pauses: run the same command again to continue. "
        f"For gated repos, put your Hugging Face access token in {TOKEN_ENV}.",
    )
    download.add_argument("source", metavar="ID|REPO", help='a catalog id, or a hub repo such as "owner/name"')
    download.add_argument("file", nargs="?", metavar="FILE", help="the .gguf file in REPO")
    download.add_argument("--quant", metavar="QUANT", help="with ID: the quantization (default: the catalog's)")
    download.add_argument("--revision", metavar="REV",
                          help="with REPO: branch or commit (default: the catalog's pinned commit, else main)")
    download.set_defaults(func=_download)

    importing = subparsers.add_parser("import", help="add a GGUF file from disk")
    importing.add_argument("path", metavar="PATH")
    importing.add_argument("--copy", action="store_true", help="copy it into slmchat's folder instead of using it where it is")
    importing.set_defaults(func=_import)

    remove = subparsers.add_parser("remove", help="remove a model (a file you imported in place is kept)")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(func=_remove)


# --- models ---------------------------------------------------------------------------------
def _models(args: argparse.Namespace, paths: Paths) -> int:
    library = ModelLibrary(paths)
    library.cleanup_stale()
    catalog = load_catalog()
    machine = hardware.detect_machine()
    print(f"This computer: {machine.describe()}")
    print("\nOn this computer:")
    rows = [(m.id, _size(m.info.file_size if m.info else None), _library_fit(m, machine), _origin(m)) for m in library.list()]
    _table(["ID", "SIZE", "FIT", "FROM"], rows)
    print("\nCatalog (download with: slmchat-cli download ID):")
    _table(["ID", "QUANT", "SIZE", "FIT", "ABOUT"], [_catalog_row(entry, machine) for entry in catalog])
    return 0


def _library_fit(model: LibraryModel, machine: hardware.Machine) -> str:
    if model.info is None:
        return f"unusable: {model.problem}"
    return _fit_label(model.info, machine)


def _fit_label(shape: GGUFInfo | hardware.ModelShape, machine: hardware.Machine) -> str:
    n_ctx = min(RECOMMEND_CONTEXT, shape.context_length or RECOMMEND_CONTEXT)
    return hardware.fit(hardware.estimate_memory(shape, n_ctx), machine).label.text


def _catalog_row(entry: CatalogEntry, machine: hardware.Machine) -> tuple[str, ...]:
    file = entry.default_file or entry.bundled_file
    if not entry.supported:
        return entry.id, "-", "-", "can't run", entry.unsupported_reason or entry.description
    shape = entry.model_shape(file)
    fit = _fit_label(shape, machine) if shape is not None else "size unknown"
    about = entry.description
    if file is not None and not file.verified:
        about += " (download not verified by slmchat)"
    if entry.gated_terms_url:
        about += f" (by using it you accept its terms: {entry.gated_terms_url})"
    return entry.id, file.quant if file else "-", _size(file.best_size if file else None), fit, about


def _origin(model: LibraryModel) -> str:
    if model.source is ModelSource.DOWNLOADED:
        return model.repo_id or "downloaded"
    if model.source is ModelSource.IMPORTED:
        return f"imported: {model.path}" if not model.owned else "imported (copied)"
    return "comes with slmchat"


# --- download ----------------------------------------------------------------------------------
def _download(args: argparse.Namespace, paths: Paths) -> int:
    library = ModelLibrary(paths)
    library.cleanup_stale()
    hub = Hub(library, token=os.environ.get(TOKEN_ENV) or None)
    catalog = load_catalog()
    repo_id, filename = _resolve_source(args, catalog, hub)
    progress = _ProgressLine(sys.stderr)
    try:
        model = hub.download(
            repo_id, filename, revision=args.revision, on_progress=progress.show
        )
    except KeyboardInterrupt:
        print(f"\nPaused. Run the same command again to continue {filename}.", file=sys.stderr)
        raise
    finally:
        progress.finish()
    print(f"Downloaded {filename} (verified) as {model.id}")
    return 0


def _resolve_source(args: argparse.Namespace, catalog: Catalog, hub: Hub) -> tuple[str, str]:
    """(repo, file) for `download ID` or `download REPO FILE`; the hub applies the catalog's pins."""
    if args.file is not None:
        return args.source, args.file
    if "/" in args.source:
        listed = hub.list_gguf_files(args.source, machine=hardware.detect_machine(), n_ctx=RECOMMEND_CONTEXT)
        files = ", ".join(
            f"{f.filename} ({_size(f.size)}, {f.fit_text})" for f in listed
        ) or "none"
        raise DownloadError(f"Say which file of {args.source} to download. Its GGUF files: {files}.")
    try:
        entry = catalog.get(args.source)
    except KeyError:
        raise UnknownModel(f'The catalog has no model "{args.source}". Run "slmchat-cli models" to see the ids.') from None
    if not entry.supported:
        raise DownloadError(f"{entry.display_name} cannot run in slmchat: {entry.unsupported_reason}")
    file = entry.file_for(args.quant)
    offered = ", ".join(f.quant for f in entry.files if f.repo)
    if file is None and not offered:
        raise DownloadError(f"{entry.display_name} has no GGUF file on Hugging Face to download.")
    if file is None:
        raise DownloadError(f"{entry.display_name} is not offered as {args.quant}. Offered: {offered}.")
    if file.repo is None:
        raise DownloadError(f"{entry.display_name} {file.quant} comes with slmchat; there is nothing to download.")
    return file.repo, file.file


class _ProgressLine:
    """One updating line on a terminal; a line every few seconds when stderr is a file or pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0
        self._drawn = False

    def show(self, progress: DownloadProgress) -> None:
        now = time.monotonic()
        if not self._tty and now - self._last < 2.0 and progress.done < progress.total:
            return
        self._last = now
        eta = f"{int(progress.eta) // 60}:{int(progress.eta) % 60:02d} left" if progress.eta is not None else ""
        text = (
            f"{_size(progress.done)} of {_size(progress.total)} ({progress.fraction:.0%}), "
            f"{_size(int(progress.speed))}/s {eta}"
        ).rstrip()
        if self._tty:
            self._stream.write("\r" + text.ljust(70))
            self._drawn = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._drawn = False


# --- import and remove -------------------------------------------------------------------------
def _import(args: argparse.Namespace, paths: Paths) -> int:
    model = ModelLibrary(paths).import_file(args.path, copy=args.copy)
    where = "copied into slmchat's folder" if model.owned else f"used where it is ({model.path})"
    print(f"Imported {model.info.name if model.info else model.path.name} as {model.id}, {where}.")
    return 0


def _remove(args: argparse.Namespace, paths: Paths) -> int:
    model = ModelLibrary(paths).remove(args.id)
    if model.owned:
        print(f"Removed {model.id} and deleted its file.")
    else:
        print(f"Removed {model.id} from slmchat; your file {model.path} was left in place.")
    return 0


# --- output helpers ------------------------------------------------------------------------------
def _table(header: list[str], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [tuple(header), *rows]) for i in range(len(header) - 1)]
    for row in [tuple(header), *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        print("  " + "  ".join([*cells, str(row[-1])]))


def _size(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "?"
    if n_bytes >= 1000**3:
        return f"{n_bytes / 1000**3:.1f} GB"
    return f"{n_bytes / 1000**2:.0f} MB"
