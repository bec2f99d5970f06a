"""Where an upscaler's or background remover's single weights file is on disk."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["weights_file"]


def weights_file(source: str, weight_name: str | None, revision: str | None) -> Path:
    """`source` itself when it is a file; else the file `weight_name` inside folder or hub
    repo `source` (a repo's file comes from the Hugging Face cache, downloaded once)."""
    path = Path(source)
    if path.is_file():
        return path
    if weight_name is None:
        raise ValueError(f"{source} is not a file: name the weights file in weight_name")
    if path.is_dir():
        return path / weight_name
    from huggingface_hub import hf_hub_download

    token = os.environ.get("HF_TOKEN")
    return Path(hf_hub_download(source, weight_name, revision=revision, token=token))
