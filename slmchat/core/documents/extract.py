"""Text and its places out of the user's files: plain text, Markdown, source code, PDF, Word, HTML.

A file comes back as `Blocks` (paragraphs, each knowing its page, heading path or lines) or as a
status and a reason the user can read ("encrypted", "too_large", …): one bad file never stops
the others from being indexed, and the library shows why that one was skipped.
"""

from __future__ import annotations

import enum
import html.parser
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 64 * 1024 * 1024  # a file larger than this is refused with a reason, not read
_SNIFF_BYTES = 8192

MARKDOWN = {".md", ".markdown"}
HTML = {".html", ".htm", ".xhtml"}
PDF = {".pdf"}
WORD = {".docx"}
TEXT = {".txt", ".text", ".log", ".csv", ".tsv", ".rst", ".json", ".yaml", ".yml", ".toml", ".ini",
        ".cfg", ".xml", ".tex", ".org", ".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".c", ".h",
        ".cpp", ".hpp", ".cc", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".kt", ".scala", ".sh",
        ".bat", ".ps1", ".sql", ".r", ".m", ".lua", ".pl", ".css", ".scss", ""}
SUPPORTED = MARKDOWN | HTML | PDF | WORD | TEXT


class Status(str, enum.Enum):
    """What became of a file; every status but INDEXED and PENDING carries a reason."""

    PENDING = "pending"
    INDEXED = "indexed"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    BINARY = "binary"
    ENCRYPTED = "encrypted"
    DAMAGED = "damaged"
    UNREADABLE = "unreadable"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Block:
    """One paragraph (or heading) with where it stands in its document."""

    text: str
    page: int | None = None  # PDFs: 1-based
    headings: tuple[str, ...] = ()  # the heading path above it (Markdown, Word, HTML)
    lines: tuple[int, int] | None = None  # text and code: first and last line, 1-based
    is_heading: bool = False


@dataclass(frozen=True)
class Extraction:
    status: Status
    reason: str = ""
    blocks: list[Block] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The whole document as plain text (whole-document answers, summaries)."""
        return "\n\n".join(block.text for block in self.blocks)


class ExtractionFailed(Exception):
    """Raised inside this module by a reader; becomes an Extraction with its status."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def extract(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> Extraction:
    """Read `path` into blocks, or say in a sentence why it cannot be indexed."""
    suffix = path.suffix.lower()
    try:
        if suffix not in SUPPORTED:
            raise ExtractionFailed(Status.UNSUPPORTED, f"{suffix} files are not read by the document library.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ExtractionFailed(Status.TOO_LARGE, f"The file is {size / 2**20:.0f} MB; files over "
                                   f"{max_bytes / 2**20:.0f} MB are skipped. Split it into smaller files to include it.")
        if suffix in PDF:
            blocks = _pdf(path)
        elif suffix in WORD:
            blocks = _docx(path)
        else:
            text = _decode(path.read_bytes())
            blocks = _html(text) if suffix in HTML else _markdown(text) if suffix in MARKDOWN else _plain(text)
    except ExtractionFailed as failed:
        return Extraction(failed.status, failed.reason)
    except FileNotFoundError:
        return Extraction(Status.UNREADABLE, "The file disappeared while it was being indexed.")
    except OSError as error:
        return Extraction(Status.UNREADABLE, f"The file could not be read ({error.strerror or error}).")
    blocks = [block for block in blocks if block.text.strip()]
    if not blocks:
        return Extraction(Status.EMPTY, "The file has no text to index (a scanned PDF needs text recognition first).")
    return Extraction(Status.INDEXED, "", blocks)


# --- plain bytes -----------------------------------------------------------------------------
def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, or Windows-1252; NULs or undecodable
    bytes mean a binary file that only has a text name."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ExtractionFailed(Status.BINARY, "The file looks like text but is not readable UTF-16.") from None
    if b"\x00" in data:
        raise ExtractionFailed(Status.BINARY, "The file holds binary data, not text, despite its name.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise ExtractionFailed(Status.BINARY, "The file holds binary data, not text, despite its name.") from None
    controls = sum(1 for ch in text[:_SNIFF_BYTES] if ord(ch) < 32 and ch not in "\t\r\n\f")
    if controls > len(text[:_SNIFF_BYTES]) * 0.05:
        raise ExtractionFailed(Status.BINARY, "The file holds binary data, not text, despite its name.")
    return text


def _paragraphs(lines: list[str], first_line: int) -> list[tuple[str, int, int]]:
    """Runs of non-blank lines: (text, first line, last line), numbered from `first_line`."""
    found: list[tuple[str, int, int]] = []
    start = None
    for offset, line in enumerate(lines + [""]):
        if line.strip() and start is None:
            start = offset
        elif not line.strip() and start is not None:
            found.append(("\n".join(lines[start:offset]).strip("\n"), first_line + start, first_line + offset - 1))
            start = None
    return found


def _plain(text: str) -> list[Block]:
    """Text, logs and source code: paragraphs separated by blank lines, with their line numbers."""
    return [Block(body, lines=(a, b)) for body, a, b in _paragraphs(text.splitlines(), 1)]


_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _markdown(text: str) -> list[Block]:
    """Paragraphs under their heading path (`#` headings; fenced code is not a heading)."""
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    section: list[str] = []
    section_start = 1
    fenced = False

    def flush() -> None:
        heads = tuple(title for _, title in path)
        blocks.extend(Block(body, headings=heads, lines=(a, b)) for body, a, b in _paragraphs(section, section_start))

    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else _ATX.match(line)
        if match:
            flush()
            level, title = len(match.group(1)), match.group(2)
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
            blocks.append(Block(title, headings=tuple(t for _, t in path), lines=(number, number), is_heading=True))
            section, section_start = [], number + 1
        else:
            section.append(line)
    flush()
    return blocks


# --- PDF and Word ----------------------------------------------------------------------------
def _pdf(path: Path) -> list[Block]:
    """Text by page (pypdfium2); paragraphs are the page's blank-line-separated runs."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError as error:
        message = str(error).lower()
        if "password" in message or "security" in message:
            raise ExtractionFailed(Status.ENCRYPTED, "The PDF is protected by a password; save an "
                                   "unprotected copy to include it.") from None
        if "file access" in message or "not found" in message:
            raise FileNotFoundError(str(path)) from None
        raise ExtractionFailed(Status.DAMAGED, "The PDF is damaged and cannot be read.") from None
    blocks: list[Block] = []
    try:
        for number in range(len(document)):
            page = document[number]
            textpage = page.get_textpage()
            text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            textpage.close()
            page.close()
            blocks += [Block(body, page=number + 1) for body, _, _ in _paragraphs(text.split("\n"), 1)]
    except pypdfium2.PdfiumError:
        raise ExtractionFailed(Status.DAMAGED, "Part of the PDF is damaged and cannot be read.") from None
    finally:
        document.close()
    return blocks


_HEADING_STYLE = re.compile(r"^(?:Heading\s*(\d)|Title)$", re.IGNORECASE)


def _docx(path: Path) -> list[Block]:
    """Paragraphs under the heading path their styles ("Heading 1", "Title") make."""
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError):
        if not path.exists():
            raise FileNotFoundError(str(path)) from None
        raise ExtractionFailed(Status.DAMAGED, "The Word file is damaged or not really a .docx file.") from None
    blocks: list[Block] = []
    path_: list[tuple[int, str]] = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        style = paragraph.style.name if paragraph.style is not None else ""
        match = _HEADING_STYLE.match(style or "")
        if match:
            level = int(match.group(1) or 0)
            path_ = [(lvl, t) for lvl, t in path_ if lvl < level] + [(level, text)]
            blocks.append(Block(text, headings=tuple(t for _, t in path_), is_heading=True))
        else:
            blocks.append(Block(text, headings=tuple(t for _, t in path_)))
    return blocks


# --- HTML ------------------------------------------------------------------------------------
_BLOCK_TAGS = {"p", "div", "li", "td", "th", "pre", "blockquote", "section", "article", "br", "tr",
               "dd", "dt", "figcaption", "table", "ul", "ol", "main", "header", "footer"}
_SKIPPED = {"script", "style", "noscript", "template", "head"}


class _HtmlText(html.parser.HTMLParser):
    """Visible text in block-sized paragraphs; h1–h6 set the heading path."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._path: list[tuple[int, str]] = []
        self._buffer: list[str] = []
        self._skip = 0
        self._heading: int | None = None

    def _flush(self) -> None:
        text = " ".join("".join(self._buffer).split())
        self._buffer = []
        if not text:
            return
        if self._heading is not None:
            level = self._heading
            self._path = [(lvl, t) for lvl, t in self._path if lvl < level] + [(level, text)]
            self.blocks.append(Block(text, headings=tuple(t for _, t in self._path), is_heading=True))
        else:
            self.blocks.append(Block(text, headings=tuple(t for _, t in self._path)))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = int(tag[1])
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = None
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._buffer.append(data)


def _html(text: str) -> list[Block]:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.blocks
