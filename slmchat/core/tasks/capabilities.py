"""What each model can do, decided from its GGUF metadata before anything is loaded.

The app offers only what a model can do: a chat box for a model with a chat template, "Continue
my text" for a base model (DistilGPT-2), Translate and Summarize for an encoder-decoder (T5,
tasks/t5.py), semantic search for an embedding model (MiniLM, tasks/embeddings.py and tasks/semantic.py),
sentiment for a classifier (DistilBERT SST-2, tasks/embeddings.py). Imports no llama.cpp, so the GUI
process can ask; for the same reason the records the task runners return live here, and cross
back from the model process (process/task_client.py) without llama.cpp in the app.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from slmchat.core.errors import UnsupportedModel
from slmchat.core.generation import FinishReason
from slmchat.core.gguf.check import GGUFInfo


class Capability(str, enum.Enum):
    """A role a model can play in the app."""

    CHAT = "chat"
    COMPLETE = "complete"  # continue the user's text
    TRANSLATE = "translate"
    SUMMARIZE = "summarize"
    EMBED = "embed"  # semantic search
    CLASSIFY = "classify"  # sentiment of a message or selection


# Encoder-decoder architectures llama.cpp runs with llama_encode + llama_decode.
ENCODER_DECODER = frozenset({"t5"})
# Encoder-only architectures llama.cpp pools with llama_decode: they produce vectors, never text.
ENCODERS = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
    "neo-bert", "eurobert",
})
# Architectures llama.cpp loads but the app has no role for (T5's encoder alone conditions
# image models; it neither writes text nor pools sentence vectors).
NO_ROLE = frozenset({"t5encoder"})
# Known models llama.cpp cannot run, with the reason shown to the user.
UNSUPPORTED = {
    "mobilebert": "llama.cpp has no implementation of the MobileBERT architecture, so slmchat "
                  "cannot run it.",
}
POOLING_RANK = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK: it applies the classifier head itself
# Our marker for a head llama.cpp cannot apply (DistilBERT's pre_classifier + ReLU): the file
# declares CLS pooling and names the activation here; embeddings.Classifier applies the head.
HEAD_ACTIVATION_KEY = "slmchat.classifier.activation"


def capabilities(info: GGUFInfo) -> frozenset[Capability]:
    """The roles the app may offer for this model, decided from its metadata alone.

    Raises UnsupportedModel for an architecture we know llama.cpp cannot run.
    """
    arch = info.architecture
    if arch in UNSUPPORTED:
        raise UnsupportedModel(UNSUPPORTED[arch], detail=f"architecture {arch}")
    if arch in NO_ROLE:
        return frozenset()
    if arch in ENCODER_DECODER:
        return frozenset({Capability.TRANSLATE, Capability.SUMMARIZE})
    if arch in ENCODERS:
        # GGUFInfo keeps scalars only, so the label list is not visible here; RANK pooling or our
        # ReLU-head marker is what makes an encoder a classifier (Classifier checks the labels).
        pooling = info.metadata.get(f"{arch}.pooling_type")
        if pooling == POOLING_RANK or HEAD_ACTIVATION_KEY in info.metadata:
            return frozenset({Capability.CLASSIFY})
        return frozenset({Capability.EMBED})
    if info.is_chat:
        return frozenset({Capability.CHAT, Capability.COMPLETE})
    return frozenset({Capability.COMPLETE})


# --- what the runners return (plain records: they cross the model process's pipe) ---------------
class Seq2SeqKind(str, enum.Enum):
    TRANSLATE = "translate"
    SUMMARIZE = "summarize"


@dataclass(frozen=True)
class Seq2SeqResult:
    """A finished task: the output text and llama.cpp's own counts of what it evaluated."""

    text: str
    tokens: tuple[int, ...]
    finish_reason: FinishReason
    prompt_tokens: int  # encoder input, as llama.cpp tokenized it
    generated: int  # decoder steps, from llama.cpp's perf counters


@dataclass(frozen=True)
class Classification:
    """One text's verdict: the winning label, softmax scores per label, and the raw logits."""

    label: str
    scores: dict[str, float]
    logits: tuple[float, ...]
