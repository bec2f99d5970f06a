"""Tokenizers built from code, so tiny pipelines never touch the Hugging Face hub.

Every builder here makes a *byte-level* tokenizer with no merges: each character (or byte)
is one token. The vocabularies are therefore a few hundred entries, yet any prompt
tokenizes, and the result round-trips through `AutoTokenizer` / `save_pretrained` like a
real one. Builders take the directory to write their vocabulary files into (some
transformers tokenizer classes only read vocabularies from files) and return the tokenizer;
the pipeline's own `save_pretrained` later writes it into the model folder.

Builders: CLIP (SD, SDXL, SD3, Flux, HiDream), T5 (SD3, Flux, Chroma, HiDream), Qwen2
(Z-Image, Qwen-Image), Llama 3 (HiDream) and Mistral (Flux2). The last three carry the chat
templates their pipelines apply.
"""

from __future__ import annotations

import importlib
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, PreTrainedTokenizerBase

__all__ = [
    "CLIP_BOS",
    "CLIP_EOS",
    "LLAMA_SPECIALS",
    "MISTRAL_SPECIALS",
    "QWEN_SPECIALS",
    "build_clip_tokenizer",
    "build_llama_tokenizer",
    "build_mistral_tokenizer",
    "build_qwen2_tokenizer",
    "build_t5_tokenizer",
    "byte_alphabet",
    "clip_vocab",
]

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


def build_t5_tokenizer(*, model_max_length: int = 512) -> PreTrainedTokenizerBase:
    """A T5 (Unigram) tokenizer over printable ASCII: pad 0, eos 1, unk 2, 192 tokens.

    Each character is a piece, with a word-initial ("▁"-prefixed) variant scored higher so
    that words start the way SentencePiece starts them. No sentinel tokens (`extra_ids=0`):
    pipelines never use them, and they would only widen the embedding.
    """
    from transformers import T5Tokenizer

    printable = [chr(code) for code in range(ord(" ") + 1, ord("~") + 1)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(char, -3.0) for char in printable]
    vocab += [("\u2581" + char, -2.5) for char in printable]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
)

# ChatML as Qwen3 writes it. Z-Image renders it with `enable_thinking=True`; the empty
# think block is added only when thinking is *disabled*, as in Qwen3's own template.
# Content may be a string or a list of {"type": "text"} parts.
_CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{%- for part in message.content if part.type == 'text' -%}"
    "{{- part.text -}}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def build_qwen2_tokenizer(*, model_max_length: int = 32768) -> PreTrainedTokenizerBase:
    """A byte-level Qwen2 tokenizer with ChatML specials and chat template.

    The specials are added as special tokens so that ChatML markers stay single tokens
    instead of splitting into bytes.
    """
    vocab = {char: index for index, char in enumerate(byte_alphabet())}
    # No unknown token: every byte is in the vocabulary.
    tokenizer: PreTrainedTokenizerBase = _transformers().Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=model_max_length,
    )
    tokenizer.add_tokens(list(QWEN_SPECIALS), special_tokens=True)
    tokenizer.chat_template = _CHATML_TEMPLATE
    return tokenizer


LLAMA_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")


def build_llama_tokenizer(*, model_max_length: int = 128) -> PreTrainedTokenizerBase:
    """A byte-level Llama-3-style tokenizer that prepends `<|begin_of_text|>`.

    Pads with its end token, as HiDream's pipeline does with the real one.
    """
    bos, eos, _ = LLAMA_SPECIALS
    return _byte_level_fast(
        specials_first=(),
        specials_last=LLAMA_SPECIALS,
        bos=bos,
        eos=eos,
        pad=eos,
        unk=None,
        model_max_length=model_max_length,
    )


# Ids 0–4 match the special-token ids of diffusers' tiny Mistral3 configs (image token 1,
# bos 2, eos 3, pad 4); the rest are the markers Mistral's chat template emits.
MISTRAL_SPECIALS = (
    "<unk>",
    "[IMG]",
    "<s>",
    "</s>",
    "<pad>",
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[IMG_BREAK]",
    "[IMG_END]",
)

# Mistral Small 3's layout: bos, the system prompt, then user turns in [INST] … [/INST].
# Flux2's `format_input` sends content as lists of {"type": "text"} parts.
_MISTRAL_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message.content is string -%}{%- set text = message.content -%}"
    "{%- else -%}{%- set text = message.content | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') -%}{%- endif -%}"
    "{%- if message.role == 'system' -%}{{- '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' -}}"
    "{%- elif message.role == 'user' -%}{{- '[INST]' + text + '[/INST]' -}}"
    "{%- else -%}{{- text + eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
)


def build_mistral_tokenizer(*, model_max_length: int = 1024) -> PreTrainedTokenizerBase:
    """A byte-level Mistral-style tokenizer with Mistral's chat template.

    Flux2 is given this tokenizer itself: the hub's `PixtralProcessor` needs torchvision,
    and text-to-image only calls `apply_chat_template`, which a tokenizer has too.
    """
    tokenizer = _byte_level_fast(
        specials_first=MISTRAL_SPECIALS,
        specials_last=(),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = _MISTRAL_TEMPLATE
    return tokenizer


def _byte_level_fast(
    *,
    specials_first: tuple[str, ...],
    specials_last: tuple[str, ...],
    bos: str,
    eos: str,
    pad: str,
    unk: str | None,
    model_max_length: int,
) -> PreTrainedTokenizerBase:
    """A GPT-2-style byte-level BPE with no merges, specials placed before or after bytes.

    A `bos` post-processor prepends the begin token, as Llama and Mistral tokenizers do.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tokens = [*specials_first, *byte_alphabet(), *specials_last]
    vocab = {token: index for index, token in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(token, special=True) for token in (*specials_first, *specials_last)]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
    )
    tokenizer: PreTrainedTokenizerBase = _transformers().PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        model_max_length=model_max_length,
    )
    return tokenizer


def _transformers() -> Any:
    # Some tokenizer classes' annotations are too loose (or missing) for mypy --strict.
    return importlib.import_module("transformers")
