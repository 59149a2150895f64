"""Every error a user can meet, as one family of exceptions.

`str()` of each is a sentence a non-programmer can act on; the GUI and the CLI show it as is.
Anything that is not a `SlmchatError` is a bug: logged with its traceback and shown as
"something went wrong". Library errors (llama-cpp-python's bare ValueError, the hub's HTTP
errors, sqlite's) are translated into these at the edge of core, never further in.
"""

from __future__ import annotations


class SlmchatError(Exception):
    """Base class: the message is for the user, `detail` (optional) is for the log."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# --- model files --------------------------------------------------------------------------
class ModelFileError(SlmchatError):
    """A model file cannot be used."""


class ModelFileMissing(ModelFileError, FileNotFoundError):
    pass


class NotAGGUF(ModelFileError):
    pass


class ModelFileDamaged(ModelFileError):
    """Truncated, corrupt, or with values llama.cpp would choke on."""


class UnsupportedModel(ModelFileError):
    """A well-formed file of an architecture or kind this app cannot run."""


class WrongModel(ModelFileError):
    """A file named like a catalog file whose GGUF header describes another model."""


class WrongModelRole(UnsupportedModel):
    """A model asked for a role it does not have (a chat model asked to translate); refused from
    its metadata, before any process starts."""


class UnsafeChatTemplate(ModelFileError):
    """The chat template could hang or exhaust memory when rendered."""


class NotEnoughMemory(ModelFileError, MemoryError):
    pass


# --- the engine ---------------------------------------------------------------------------
class EngineError(SlmchatError):
    """The model process failed while working."""


class EngineCrashed(EngineError):
    """The model process died (a signal, an abort inside llama.cpp)."""


class EngineHung(EngineError):
    """The model process stopped answering within its time budget and was ended."""


class ContextFull(EngineError):
    """The conversation no longer fits the model's context, and trimming is turned off."""


class NotAChatModel(EngineError):
    """The model has no chat format; it can only continue text."""


# --- downloads and the hub ----------------------------------------------------------------
class DownloadError(SlmchatError):
    pass


class NotEnoughDiskSpace(DownloadError, OSError):
    pass


class DownloadCancelled(DownloadError):
    pass


class DownloadVerificationFailed(DownloadError):
    pass


class HubUnreachable(DownloadError, ConnectionError):
    pass


class UnsafeName(DownloadError, ValueError):
    """A repo or file name from the hub that could escape the models folder."""


class DownloadPaused(DownloadError):
    """Stopped on request; the bytes so far are kept and the next attempt continues from them."""


class DownloadAlreadyRunning(DownloadError):
    """Another window or command is downloading the same file right now."""


class HubAccessDenied(DownloadError, PermissionError):
    """A gated or private repo: the user must accept its licence and give a token."""


class HubNotFound(DownloadError, LookupError):
    """No such repo, revision or file on the hub."""


# --- the model library --------------------------------------------------------------------
class LibraryError(SlmchatError):
    pass


class UnknownModel(LibraryError, LookupError):
    pass


class CannotRemoveModel(LibraryError):
    """The starter model ships with the app and stays."""


# --- the app ------------------------------------------------------------------------------
class AppNotAnswering(SlmchatError):
    """Another slmchat holds the data folder but never answered (it hangs)."""


# --- the store ----------------------------------------------------------------------------
class StoreError(SlmchatError):
    pass


class DatabaseTooNew(StoreError):
    """The database was written by a newer slmchat; we refuse rather than damage it."""


class NotFound(StoreError, LookupError):
    pass


class DatabaseFull(StoreError):
    """A write needed room the disk (or the database's size limit) does not have; nothing was changed."""


class DatabaseBusy(StoreError):
    """Another program held the database longer than the store waits; nothing was changed."""


class BackupFailed(StoreError):
    """A copy of the conversations (a backup, a restored backup, a repaired database) could not
    be written, or a backup cannot be restored; the database itself was left as it was."""


# --- the data folder ----------------------------------------------------------------------
class InvalidDataFolder(SlmchatError, ValueError):
    """A data folder the app cannot rely on (empty, or relative to wherever it was started)."""
