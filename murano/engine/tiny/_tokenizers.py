"""Tokenizers built from code, so tiny pipelines never touch the Hugging Face hub.

Every builder here makes a *byte-level* tokenizer with no merges: each character (or byte)
is one token. The vocabularies are therefore a few hundred entries, yet any prompt
tokenizes, and the result round-trips through `AutoTokenizer` / `save_pretrained` like a
real one. Builders take the directory to write their vocabulary files into (some
transformers tokenizer classes only read vocabularies from files) and return the tokenizer;
the pipeline's own `save_pretrained` later writes it into the model folder.

Families add their builders here (T5, Qwen2, Llama, Mistral, …), reusing `byte_alphabet()`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

__all__ = ["CLIP_BOS", "CLIP_EOS", "build_clip_tokenizer", "byte_alphabet", "clip_vocab"]

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
# CLIP's BPE marks the last piece of each word with this suffix.
_CLIP_END_OF_WORD = "</w>"


@cache
def byte_alphabet() -> tuple[str, ...]:
    """The 256 printable characters GPT-2-style byte-level tokenizers map bytes to.

    Same table as `bytes_to_unicode` in GPT-2/CLIP: printable Latin-1 bytes stand for
    themselves, the rest are shifted above U+0100 so that no byte maps to whitespace or a
    control character. The order (by byte value) fixes every token id, so builds are
    reproducible.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = dict.fromkeys(range(256), 0)
    shifted = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = byte
        else:
            table[byte] = 256 + shifted
            shifted += 1
    return tuple(chr(table[byte]) for byte in range(256))


def clip_vocab() -> dict[str, int]:
    """CLIP vocabulary: bytes, bytes ending a word, then BOS (512) and EOS (513).

    EOS is the highest id on purpose: CLIP text models configured the legacy way
    (`eos_token_id=2`) pool the hidden state at `argmax(input_ids)`, which then still
    lands on EOS.
    """
    alphabet = byte_alphabet()
    tokens = [*alphabet, *(char + _CLIP_END_OF_WORD for char in alphabet), CLIP_BOS, CLIP_EOS]
    return {token: index for index, token in enumerate(tokens)}


def build_clip_tokenizer(
    out_dir: Path, *, pad_token: str = CLIP_EOS, model_max_length: int = 77
) -> CLIPTokenizer:
    """A CLIP tokenizer with `clip_vocab()` and no merges, its files written to `out_dir`.

    `pad_token` is `<|endoftext|>` for SD/SDXL's first tokenizer; SDXL/SD3's second
    tokenizer pads with `"!"`, as the released models do.
    """
    from transformers import CLIPTokenizer

    vocab = clip_vocab()
    if pad_token not in vocab:
        raise ValueError(
            f"pad_token {pad_token!r} is not a single CLIP token; use one of the vocab"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.json"
    merges_file = out_dir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # A merges file with only the header: no merges, so words split into characters.
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        vocab=str(vocab_file),
        merges=str(merges_file),
        pad_token=pad_token,
        model_max_length=model_max_length,
    )
