"""Building the catalog from settings: a models file, `--model ID=SOURCE` entries, or, when
neither is given, the embedded default model."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from murano.catalog.entries import Catalog, ModelEntry, build_entry, load_models_file
from murano.catalog.families import detect_family
from murano.catalog.spec import Constraints, ModelSpec, Price, Pricing, StepsConstraint

__all__ = ["DEFAULT_MODEL_ID", "build_catalog", "default_entry", "read_pipeline_class"]

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


def _with_family(raw: dict[str, Any]) -> ModelEntry:
    family = raw.get("family")
    if not isinstance(family, str):
        source = str(raw.get("source", ""))
        family = detect_family(read_pipeline_class(source, raw.get("revision"))).name
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
        raws.append({"id": model_id, "source": source, "load": "first-use"})
    entries = [_with_family(raw) for raw in raws]
    if not entries:
        if default is None:
            raise ValueError("no models configured")
        entries = [default]
    return Catalog(entries, default_id)
