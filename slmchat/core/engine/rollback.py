"""Cutting a context's KV cache back to a prefix, only where llama.cpp can do it exactly.

Regenerate, an edit, a new turn whose template re-tokenises the last reply: each keeps the first
`keep` cached positions and evaluates the rest. llama.cpp's `llama_memory_seq_rm` does not
always say when what remains is unusable:

- A sliding-window cache (Gemma 2 and 3) only holds the last window of positions in its
  sliding layers once it has dropped older ones. slmchat keeps those layers at full size
  (`swa_full`, backend.py), but a saved conversation state (`llama_state_seq_get_data`) carries
  only the window: after a restore, cutting back further than the end answers from a cache that
  lacks positions the next token attends to, silently (measured on Gemma 3 270M: wrong tokens).
- A recurrent state (Mamba, RWKV, and the recurrent half of hybrids) cannot be cut at all:
  llama.cpp refuses a cut inside it, but a cut at its very last position empties it and
  reports success.

So after the cut this checks llama.cpp's own account of the positions left (the same test
llama.cpp's server applies before reusing a sliding-window cache) and, when they do not cover
what the next token needs, empties the cache so that the caller evaluates the prompt in full.
"""

from __future__ import annotations

from typing import Any

from slmchat.core.llama_api import llama_cpp

_SEQ = 0  # the engine's one sequence


def keep_prefix(memory: Any, model: Any, keep: int) -> bool:
    """Drop positions `keep` and later from the cache; True when the first `keep` remain usable.

    False when llama.cpp could not cut there or what is left lacks positions the token at
    `keep` would attend to; the cache is then empty and the whole prompt must be evaluated.
    """
    if llama_cpp.llama_memory_seq_rm(memory, _SEQ, keep, -1) and covers(
        llama_cpp.llama_memory_seq_pos_min(memory, _SEQ),
        llama_cpp.llama_memory_seq_pos_max(memory, _SEQ),
        keep,
        n_swa=llama_cpp.llama_model_n_swa(model),
        recurrent=bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)),
    ):
        return True
    llama_cpp.llama_memory_clear(memory, True)
    return False


def covers(pos_min: int, pos_max: int, keep: int, *, n_swa: int, recurrent: bool) -> bool:
    """Whether a cache holding positions `pos_min`..`pos_max` (llama.cpp's account; -1 when
    empty) can go on at position `keep` as if positions 0..keep-1 had just been evaluated.

    The last kept position must be there (a recurrent state is nothing else). Attention layers
    need every position the next token sees: all of them, or with a sliding window of `n_swa`
    the last `n_swa` (llama.cpp's server asks for the same, pos_min <= keep - n_swa).
    """
    if keep == 0:
        return pos_max == -1
    if pos_max != keep - 1:
        return False
    if recurrent:
        return True
    return pos_min <= (max(0, keep - n_swa) if n_swa > 0 else 0)
