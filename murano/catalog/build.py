"""Building the catalog from settings: a models file, `--model ID=SOURCE` entries, or, when
neither is given, the embedded default model. An entry without a `family` gets the one its
source says: `model_index.json` of a diffusers directory or repo, or the keys of a single
`.safetensors` checkpoint (SD 1.x/2.x, SDXL); its constraints are then the family's."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from murano.catalog.entries import (
    Catalog,
    ModelEntry,
    build_entry,
    load_models_file,
    upstream_family_of,
)
from murano.catalog.families import UPSTREAM_FAMILIES, detect_family
from murano.catalog.spec import Constraints, ModelSpec, Price, Pricing, StepsConstraint

__all__ = [
    "DEFAULT_MODEL_ID",
    "build_catalog",
    "default_entry",
    "read_pipeline_class",
    "single_file_family",
]

DEFAULT_MODEL_ID = "murano-tiny"


def read_pipeline_class(source: str, revision: str | None = None) -> str:
    """`_class_name` from a model's `model_index.json` (local directory or hub repo)."""
    path = Path(source)
    if path.is_dir():
        index = path / "model_index.json"
    else:
        from huggingface_hub import hf_hub_download

        index = Path(hf_hub_download(source, "model_index.json", revision=revision))
    try:
        name = json.loads(index.read_text(encoding="utf-8"))["_class_name"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{source}: cannot read the pipeline class from {index}") from exc
    return str(name)


def default_entry(model_dir: Path, *, steps: int, cfg_scale: float) -> ModelEntry:
    """The embedded tiny model: real SD architecture, random weights, so its images are
    noise. Priced like Venice's flat models so billing can be tried out of the box."""
    spec = ModelSpec(
        name="murano tiny SD (random weights: images are noise)",
        privacy="private",
        traits=["default", "fastest"],
        constraints=Constraints(
            promptCharacterLimit=1500,
            steps=StepsConstraint(default=steps, max=50),
            widthHeightDivisor=8,
        ),
        pricing=Pricing(generation=Price(usd=Decimal("0.01"), diem=Decimal("0.01"))),
    )
    return ModelEntry.model_validate(
        {
            "id": DEFAULT_MODEL_ID,
            "source": str(model_dir),
            "family": "sd",
            "device": "cpu",
            "cfg_scale": cfg_scale,
            "model_spec": spec,
        }
    )


# diffusers' names for the single-file checkpoint types murano serves, by family.
_SINGLE_FILE_TYPES = {"v1": "sd", "v2": "sd", "xl_base": "sdxl"}


class _LazyCheckpoint(Mapping[str, Any]):
    """A safetensors file as a state dict that reads a tensor only when asked for it:
    telling the model type apart needs a few small tensors of a multi-GB file."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._keys: list[str] = list(handle.keys())
        self._key_set = set(self._keys)

    def __getitem__(self, key: str) -> Any:
        if key not in self._key_set:
            raise KeyError(key)
        return self._handle.get_tensor(key)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def single_file_family(source: str, revision: str | None = None) -> str:
    """The family of an original-layout (LDM) `.safetensors` checkpoint: a local path, a
    URL or a hub file path. diffusers' `infer_diffusers_model_type` decides; its fallback
    ("v1" for anything it does not recognise) is trusted only for an LDM UNet, and an SDXL
    checkpoint too small for diffusers' marker key (a test model) is known by its second
    text encoder."""
    # diffusers is untyped; these two are its own single-file loader's first steps.
    utils: Any = importlib.import_module("diffusers.loaders.single_file_utils")

    if Path(source).is_file():
        from safetensors import safe_open

        with safe_open(source, framework="pt") as handle:
            checkpoint: Mapping[str, Any] = _LazyCheckpoint(handle)
            model_type = str(utils.infer_diffusers_model_type(checkpoint))
            keys = list(checkpoint)
    else:
        checkpoint = utils.load_single_file_checkpoint(
            source, revision=revision, token=os.environ.get("HF_TOKEN")
        )
        model_type = str(utils.infer_diffusers_model_type(checkpoint))
        keys = list(checkpoint)
    if model_type == "v1":
        if any(key.startswith("conditioner.embedders.1.model.") for key in keys):
            model_type = "xl_base"
        elif not any(key.startswith("model.diffusion_model.") for key in keys):
            raise ValueError(f"{source}: not a Stable Diffusion checkpoint murano recognises")
    family = _SINGLE_FILE_TYPES.get(model_type)
    if family is None:
        served = ", ".join(sorted(set(_SINGLE_FILE_TYPES.values())))
        raise ValueError(
            f"{source}: a {model_type!r} checkpoint; murano loads single files of {served}"
            " only (give a diffusers-format directory or repo for other models)"
        )
    return family


def _with_family(raw: dict[str, Any]) -> ModelEntry:
    upstream = raw.get("upstream")
    if isinstance(upstream, dict) and "family" not in raw:
        kind_family = upstream_family_of(str(upstream.get("kind")))
        if kind_family not in UPSTREAM_FAMILIES:
            raise ValueError(
                f"model entry {raw.get('id')!r}: upstream kind must be 'venice' or 'openai'"
            )
        return build_entry(raw, family=kind_family)
    family = raw.get("family")
    if not isinstance(family, str):
        source = str(raw.get("source", ""))
        revision = raw.get("revision")
        if source.endswith(".safetensors"):
            family = single_file_family(source, revision)
        else:
            family = detect_family(read_pipeline_class(source, revision)).name
    return build_entry(raw, family=family)


def build_catalog(
    models_file: Path | None,
    model_sources: list[str],
    default: ModelEntry | None = None,
) -> Catalog:
    """Entries from `models_file` and `ID=SOURCE` strings; `default` (the embedded model)
    when there are none."""
    raws: list[dict[str, Any]] = []
    default_id: str | None = None
    if models_file is not None:
        raws, default_id = load_models_file(models_file)
    for item in model_sources:
        model_id, sep, source = item.partition("=")
        if not sep or not model_id or not source:
            raise ValueError(f"--model expects ID=SOURCE, got {item!r}")
        raws.append({"id": model_id, "source": source, "load": "start"})
    entries = [_with_family(raw) for raw in raws]
    if not entries:
        if default is None:
            raise ValueError("no models configured")
        entries = [default]
    return Catalog(entries, default_id)
