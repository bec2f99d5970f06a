"""Model entries: what a models TOML file says about each model, and the catalog of them.

default = "z-image-turbo"          # optional; else the entry with trait "default", else the first

[[models]]
id = "z-image-turbo"               # what clients send
source = "Tongyi-MAI/Z-Image-Turbo"   # hub repo id, local directory or single .safetensors file
family = "z-image"                 # optional: detected from model_index.json
revision = "main"                  # optional hub revision pin
dtype = "bfloat16"                 # optional: the family's default
device = "auto"                    # auto: cuda, then mps, then cpu
load = "start"                     # or "first-use"
replicas = 2                       # copies, one per device (default 1; "all": every device)
devices = ["cuda:0", "cuda:1"]     # optional: the MURANO_DEVICES they may use (default: all)
cpu_offload = false                # cuda only: keep weights in CPU RAM between calls
cfg_scale = 0.0                    # optional: the family's default
config = "stabilityai/stable-diffusion-xl-base-1.0"  # single-file sources: their configs
scheduler = "EulerAncestralDiscreteScheduler"        # optional: else the model's own
scheduler_config = { timestep_spacing = "trailing" } # optional overrides of its config
max_sequence_length = 256          # optional: the family's
type = "image"                     # or "upscale" / "background-remove" (murano.catalog.postops)
[models.components.vae]            # optional: a component from elsewhere
source = "madebyollin/sdxl-vae-fp16-fix"
class = "AutoencoderKL"            # a diffusers or transformers class
[[models.loras]]                   # optional, loaded once with the model
source = "owner/lora-repo"         # hub repo id, local directory or .safetensors file
weight_name = "lora.safetensors"   # the file inside a repo or directory
scale = 0.8                        # at lora_strength 50 (or absent); 100 doubles it
fixed = false                      # true: always at `scale`, fused (speed-up LoRAs)
[models.model_spec]                # Venice's model_spec field names
name = "Z-Image Turbo"

A model without open weights names an upstream API instead of a `source` (never both):

[[models]]
id = "grok-imagine-image"
[models.upstream]
kind = "venice"                    # any Venice image API (Venice, another murano), or "openai"
base_url = "https://api.venice.ai/api/v1"
key_env = "VENICE_API_KEY"         # the environment variable with the operator's key
model = "grok-imagine-image"       # the upstream's id (default: the entry's id)
timeout_s = 120
watermark = false                  # murano's watermark on the upstream's images
embed_metadata = false             # murano's metadata (when the caller asks for it)
safety_check = false               # murano's safe-mode classifier and blur
[models.model_spec]
name = "Grok Imagine"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from murano.catalog.families import UPSTREAM_FAMILIES, Family, get_family
from murano.catalog.optimize import OptimizeSettings
from murano.catalog.ray import RayOptions
from murano.catalog.spec import Constraints, ModelSpec, StepsConstraint
from murano.errors import ModelNotFound

__all__ = [
    "MODEL_TYPES",
    "Catalog",
    "ComponentEntry",
    "LoraEntry",
    "ModelEntry",
    "ModelType",
    "UpstreamEntry",
    "load_models_file",
]

# A device of MURANO_DEVICES (`cuda:1`), or one of its workers when a device is listed
# twice (`cpu#1`).
DEVICE_PATTERN = r"^(cpu|mps|cuda(:[0-9]+)?)(#[0-9]+)?$"

# What a model does: "image" models generate (and edit); the others serve one endpoint each,
# /image/upscale and /image/background-remove (see `murano.catalog.postops`).
ModelType = Literal["image", "upscale", "background-remove"]
MODEL_TYPES: tuple[ModelType, ...] = ("image", "upscale", "background-remove")


class LoraEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    weight_name: str | None = None
    revision: str | None = None
    scale: float = Field(default=1.0, ge=0.0, le=2.0)
    # PEFT keys its layers by this name, so it cannot hold a dot.
    adapter_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    # A LoRA the model is always run with (a step-distillation "Lightning" LoRA, say):
    # fused into the weights at load, never touched by `lora_strength`.
    fixed: bool = False


class ComponentEntry(BaseModel):
    """A pipeline component loaded from elsewhere than the model's source: a text encoder
    the repo does not ship (HiDream's Llama), a fixed VAE (SDXL's fp16 VAE)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str
    # A transformers or diffusers class (`LlamaForCausalLM`, `AutoencoderKL`, `AutoTokenizer`).
    class_name: str = Field(alias="class", min_length=1)
    subfolder: str | None = None
    revision: str | None = None


class UpstreamEntry(BaseModel):
    """An API that serves the model: murano forwards requests to it with the operator's key
    (`key_env`, read from the environment at each call), after its own admission."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["venice", "openai"]
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    key_env: str = Field(min_length=1)
    model: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_connections: int = Field(default=32, ge=1)
    # OpenAI upstreams: the sizes they accept ("1024x1024", ...); a request gets the one
    # closest to its own aspect ratio. None: the request's own width x height.
    sizes: list[Annotated[str, Field(pattern=r"^[1-9][0-9]*x[1-9][0-9]*$")]] | None = None
    # murano's own post-processing of the upstream's images, each on request.
    watermark: bool = False
    embed_metadata: bool = False
    safety_check: bool = False
    # The upstream edits images too: murano's edit endpoints forward to it (Venice:
    # /image/edit or /image/multi-edit; OpenAI: /images/edits), and `type=inpaint` lists
    # the model. How many inputs one edit takes: `model_spec.constraints.maxInputImages`.
    edits: bool = False


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    # Weights; "" for a model served by an `upstream`.
    source: str = ""
    upstream: UpstreamEntry | None = None
    family: str
    type: ModelType = "image"
    # Upscalers and background removers: the weights file inside a repo or folder `source`.
    weight_name: str | None = None
    # Upscalers and background removers: their engine's options (`murano.catalog.postops`).
    options: dict[str, Any] = Field(default_factory=dict)
    revision: str | None = None
    dtype: str | None = None
    device: str = "auto"
    load: Literal["start", "first-use"] = "start"
    # Copies of the model, each its own pipeline on its own device ("all": one on every
    # device it may use), and the devices (of MURANO_DEVICES) it may use; None: all of them.
    replicas: Annotated[int, Field(ge=1)] | Literal["all"] = 1
    devices: list[Annotated[str, Field(pattern=DEVICE_PATTERN)]] | None = Field(
        default=None, min_length=1
    )
    cpu_offload: bool = False
    # Requests (images) per minute per key on this model, where not the server's default.
    rpm: int | None = Field(default=None, ge=1)
    # The default cfg_scale of this model (else its family's).
    cfg_scale: float | None = None
    # For a single-file source: a diffusers-format directory or repo with its configs.
    config: str | None = None
    # A diffusers scheduler class to use instead of the model's own, built from the model's
    # scheduler config with `scheduler_config` overrides.
    scheduler: str | None = None
    scheduler_config: dict[str, Any] = Field(default_factory=dict)
    # Text tokens for the long text encoder, where not the family's (FLUX.1 schnell: 256).
    max_sequence_length: int | None = Field(default=None, ge=1)
    components: dict[str, ComponentEntry] = Field(default_factory=dict)
    created: int = 0
    loras: list[LoraEntry] = Field(default_factory=list)
    # A tiny VAE for live previews (diffusers AutoencoderTiny: a repo id or a directory);
    # None: the family's linear latent-to-RGB projection (`murano.engine.previews`).
    preview_vae: str | None = None
    model_spec: ModelSpec
    # `[models.optimize]`: speed settings applied at load (murano.catalog.optimize).
    optimize: OptimizeSettings = Field(default_factory=OptimizeSettings)
    # `[models.ray]`: the model's Ray Serve deployment under `murano serve --ray`.
    ray: RayOptions = Field(default_factory=RayOptions)

    @model_validator(mode="after")
    def _source_or_upstream(self) -> ModelEntry:
        if bool(self.source) == (self.upstream is not None):
            raise ValueError(
                f"model {self.id!r}: give exactly one of `source` (weights) or [upstream]"
            )
        upstream_family = None if self.upstream is None else upstream_family_of(self.upstream.kind)
        if (self.family in UPSTREAM_FAMILIES or upstream_family) and self.family != upstream_family:
            raise ValueError(f"model {self.id!r}: family {self.family!r} does not fit its source")
        if self.upstream is not None and (self.loras or self.components):
            raise ValueError(f"model {self.id!r}: an upstream model takes no loras or components")
        if self.upstream is not None and (self.replicas != 1 or self.devices):
            raise ValueError(f"model {self.id!r}: an upstream model has no replicas or devices")
        if isinstance(self.replicas, int) and self.devices and self.replicas > len(self.devices):
            raise ValueError(
                f"model {self.id!r}: replicas = {self.replicas} on {len(self.devices)} devices;"
                " a device holds one replica of a model"
            )
        return self

    @property
    def family_info(self) -> Family:
        return get_family(self.family)

    @property
    def constraints(self) -> Constraints:
        return self.model_spec.constraints


def upstream_family_of(kind: str) -> str:
    """The catalog family of a model served by an upstream of this kind."""
    return f"{kind}-upstream"


def spec_for_family(family: Family, name: str, **overrides: Any) -> ModelSpec:
    """A model_spec whose constraints are the family's defaults (for `--model ID=SOURCE`)."""
    constraints = Constraints(
        promptCharacterLimit=family.prompt_limit,
        steps=StepsConstraint(default=family.default_steps, max=family.max_steps),
        widthHeightDivisor=family.divisor,
    )
    return ModelSpec(name=name, constraints=constraints, **overrides)


class Catalog:
    """The models this server serves, by id, with one default."""

    def __init__(self, entries: Iterable[ModelEntry], default: str | None = None) -> None:
        self._entries: dict[str, ModelEntry] = {}
        for entry in entries:
            if entry.id in self._entries:
                raise ValueError(f"model id {entry.id!r} is listed twice")
            self._entries[entry.id] = entry
        if not self._entries:
            raise ValueError("the catalog has no models")
        self.default_id = default or self._pick_default()
        if self.default_id not in self._entries:
            raise ValueError(f"default model {self.default_id!r} is not in the catalog")
        if self._entries[self.default_id].type != "image":
            raise ValueError(f"default model {self.default_id!r} is not an image model")

    def _pick_default(self) -> str:
        images = self.of_type("image")
        if not images:
            raise ValueError("the catalog has no image model")
        for entry in images:
            if "default" in entry.model_spec.traits:
                return entry.id
        return images[0].id

    def of_type(self, kind: ModelType) -> list[ModelEntry]:
        """The entries of one type, in file order."""
        return [entry for entry in self._entries.values() if entry.type == kind]

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    @property
    def default(self) -> ModelEntry:
        return self._entries[self.default_id]

    def traits(self) -> dict[str, str]:
        """Venice's `/models/traits` map: trait → the first image model that has it."""
        found: dict[str, str] = {}
        for entry in self.of_type("image"):
            for trait in entry.model_spec.traits:
                found.setdefault(trait, entry.id)
        return found


def load_models_file(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The raw `[[models]]` tables and the `default` id of a models TOML file. Entries
    without a family are completed by the engine, which can read `model_index.json`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read models file {path}: {exc}") from exc
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise ValueError(f"models file {path} has no [[models]] entries")
    default = data.get("default")
    return models, default if isinstance(default, str) else None


def build_entry(raw: dict[str, Any], *, family: str) -> ModelEntry:
    """A validated entry; the family's defaults fill the constraints the file leaves out."""
    info = get_family(family)
    spec_raw = dict(raw.get("model_spec") or {})
    spec_raw.setdefault("name", raw.get("id", ""))
    base = spec_for_family(info, spec_raw["name"]).constraints.model_dump(exclude_none=True)
    spec_raw["constraints"] = {**base, **(spec_raw.get("constraints") or {})}
    try:
        entry = ModelEntry.model_validate({**raw, "family": family, "model_spec": spec_raw})
    except ValidationError as exc:
        raise ValueError(f"model entry {raw.get('id')!r}: {exc}") from exc
    divisor = entry.constraints.widthHeightDivisor
    if divisor % info.divisor:
        # The pipeline would round or refuse such sizes; the catalog must refuse them first.
        raise ValueError(
            f"model entry {entry.id!r}: widthHeightDivisor {divisor} is not a multiple of"
            f" {info.divisor}, which the {family} family needs; use {info.divisor}"
        )
    return entry
