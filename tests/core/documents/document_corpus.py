"""The public-domain test corpus (passages from Project Gutenberg classics) and questions whose
answers are known: the passage a question needs holds `answer` word for word."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
QUESTIONS: list[dict[str, str]] = json.loads((HERE / "questions.json").read_text(encoding="utf-8"))
