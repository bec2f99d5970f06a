"""Export a saved tiny diffusers pipeline as one original-layout (LDM) checkpoint.

Community fine-tunes ship as a single `.safetensors` file in the key layout of the original
Stability/CompVis code (`model.diffusion_model.input_blocks.…`, `first_stage_model.…`,
`cond_stage_model.…`), loaded with `Pipeline.from_single_file`. diffusers' own
diffusers→LDM scripts are not in its wheel, so this module does the key mapping itself.

The mapping is the inverse of diffusers' loader (`diffusers.loaders.single_file_utils`),
which reads its block indices from the UNet config; so unlike the original scripts this
export is not tied to SD's `layers_per_block=2`. Loading back needs the diffusers folder as
`config=`, since the hub (where the loader would fetch configs) is out of reach.

Each family is one entry of `_EXPORTERS`, keyed by the pipeline class recorded in
`model_index.json` (so the file's own family picks the layout): SD 1.x, and SDXL, whose
first text encoder keeps the HF-CLIP layout under `conditioner.embedders.0.transformer.`
and whose second is rewritten to OpenCLIP's layout under `conditioner.embedders.1.model.`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "SINGLE_FILE_PIPELINES",
    "clip_to_ldm",
    "export_single_file",
    "open_clip_to_ldm",
    "unet_to_ldm",
    "vae_to_ldm",
]

StateDict = dict[str, "Tensor"]

_UNET_PREFIX = "model.diffusion_model."
_VAE_PREFIX = "first_stage_model."
_CLIP_PREFIX = "cond_stage_model.transformer."
_SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
_SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# diffusers' UNet ResnetBlock2D names → LDM ResBlock names.
_UNET_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    # SDXL's micro-conditioning embedding (and class embeddings) live in `label_emb`.
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
}
# diffusers' VAE Attention names → LDM AttnBlock names.
_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)

_BLOCK = re.compile(
    r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)"
)
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def export_single_file(pipeline_dir: Path, out_file: Path) -> Path:
    """Write the pipeline saved in `pipeline_dir` as one LDM-layout safetensors file.

    The file is written beside `out_file` and renamed into place, so a failed export never
    leaves a truncated checkpoint.
    """
    from safetensors.torch import save_file

    class_name = _read_json(pipeline_dir / "model_index.json")["_class_name"]
    exporter = _EXPORTERS.get(class_name)
    if exporter is None:
        known = ", ".join(SINGLE_FILE_PIPELINES)
        raise ValueError(f"cannot export a {class_name} to a single file; supported: {known}")
    state = exporter(pipeline_dir)
    partial = out_file.with_name(out_file.name + ".partial")
    save_file(state, str(partial), metadata={"format": "pt"})
    os.replace(partial, out_file)
    return out_file


def _export_sd(pipeline_dir: Path) -> StateDict:
    unet, unet_config = _load_component(pipeline_dir / "unet")
    vae, _ = _load_component(pipeline_dir / "vae")
    text_encoder, _ = _load_component(pipeline_dir / "text_encoder")
    return {
        **_prefixed(_UNET_PREFIX, unet_to_ldm(unet, unet_config)),
        **_prefixed(_VAE_PREFIX, vae_to_ldm(vae)),
        **_prefixed(_CLIP_PREFIX, clip_to_ldm(text_encoder)),
    }


def _export_sdxl(pipeline_dir: Path) -> StateDict:
    unet, unet_config = _load_component(pipeline_dir / "unet")
    vae, _ = _load_component(pipeline_dir / "vae")
    text_encoder, _ = _load_component(pipeline_dir / "text_encoder")
    text_encoder_2, _ = _load_component(pipeline_dir / "text_encoder_2")
    return {
        **_prefixed(_UNET_PREFIX, unet_to_ldm(unet, unet_config)),
        **_prefixed(_VAE_PREFIX, vae_to_ldm(vae)),
        **_prefixed(_SDXL_CLIP_PREFIX, clip_to_ldm(text_encoder)),
        **_prefixed(_SDXL_OPEN_CLIP_PREFIX, open_clip_to_ldm(text_encoder_2)),
    }


_EXPORTERS: Mapping[str, Callable[[Path], StateDict]] = {
    "StableDiffusionPipeline": _export_sd,
    "StableDiffusionXLPipeline": _export_sdxl,
}

# Pipeline classes `export_single_file` can write, by the name `model_index.json` records.
SINGLE_FILE_PIPELINES: tuple[str, ...] = tuple(sorted(_EXPORTERS))


def unet_to_ldm(state: Mapping[str, Tensor], config: Mapping[str, Any]) -> StateDict:
    """`UNet2DConditionModel` keys → LDM `UNetModel` keys (no prefix)."""
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError(f"per-block layers_per_block={layers!r} has no LDM layout; use an int")
    return {_unet_key(key, layers, state): value for key, value in state.items()}


def _unet_key(key: str, layers: int, state: Mapping[str, Tensor]) -> str:
    module, _, param = key.rpartition(".")
    if module in _UNET_TOP_LEVEL:
        return f"{_UNET_TOP_LEVEL[module]}.{param}"
    if match := _MID.fullmatch(key):
        kind, index, rest = match[1], int(match[2]), match[3]
        # LDM's middle_block is [ResBlock, SpatialTransformer, ResBlock].
        if kind == "resnets":
            return f"middle_block.{2 * index}.{_rename(rest, _UNET_RESNET)}"
        return f"middle_block.{1 + 2 * index}.{rest}"
    if match := _BLOCK.fullmatch(key):
        side, block, kind, index, rest = match[1], int(match[2]), match[3], int(match[4]), match[5]
        if side == "down":
            return _unet_down_key(block, kind, index, rest, layers)
        return _unet_up_key(block, kind, index, rest, layers, state)
    raise ValueError(f"no LDM name for UNet key {key!r}")


def _unet_down_key(block: int, kind: str, index: int, rest: str, layers: int) -> str:
    # LDM flattens the down path: input_blocks.0 is conv_in, then each level contributes
    # `layers` [ResBlock, SpatialTransformer] entries and one downsampler entry.
    first = 1 + block * (layers + 1)
    if kind == "resnets":
        return f"input_blocks.{first + index}.0.{_rename(rest, _UNET_RESNET)}"
    if kind == "attentions":
        return f"input_blocks.{first + index}.1.{rest}"
    return f"input_blocks.{first + layers}.0.op.{rest.removeprefix('conv.')}"


def _unet_up_key(
    block: int, kind: str, index: int, rest: str, layers: int, state: Mapping[str, Tensor]
) -> str:
    # Up levels have layers + 1 entries; the upsampler joins the last one, after its
    # SpatialTransformer if the level has attention.
    first = block * (layers + 1)
    if kind == "resnets":
        return f"output_blocks.{first + index}.0.{_rename(rest, _UNET_RESNET)}"
    if kind == "attentions":
        return f"output_blocks.{first + index}.1.{rest}"
    has_attention = any(key.startswith(f"up_blocks.{block}.attentions.") for key in state)
    slot = 2 if has_attention else 1
    return f"output_blocks.{first + layers}.{slot}.{rest}"


def vae_to_ldm(state: Mapping[str, Tensor]) -> StateDict:
    """`AutoencoderKL` keys → LDM `AutoencoderKL` keys (no prefix)."""
    up_levels = len({key.split(".")[2] for key in state if key.startswith("decoder.up_blocks.")})
    converted: StateDict = {}
    for key, value in state.items():
        ldm_key = _vae_key(key, up_levels)
        if ".attn_1." in ldm_key and value.ndim == 2:
            # LDM's VAE attention uses 1×1 convolutions where diffusers uses linears.
            value = value[:, :, None, None]
        converted[ldm_key] = value
    return converted


def _vae_key(key: str, up_levels: int) -> str:
    coder, _, rest = key.partition(".")
    if coder not in ("encoder", "decoder"):
        return key  # quant_conv / post_quant_conv keep their names
    rest = rest.replace("conv_norm_out.", "norm_out.")
    if match := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        rest = f"down.{match[1]}.block.{match[2]}.{_vae_resnet(match[3])}"
    elif match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", rest):
        rest = f"down.{match[1]}.downsample.{match[2]}"
    elif match := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        # LDM numbers decoder levels from the highest resolution, diffusers from the lowest.
        level = up_levels - 1 - int(match[1])
        rest = f"up.{level}.block.{match[2]}.{_vae_resnet(match[3])}"
    elif match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest):
        rest = f"up.{up_levels - 1 - int(match[1])}.upsample.{match[2]}"
    elif match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        rest = f"mid.block_{int(match[1]) + 1}.{_vae_resnet(match[2])}"
    elif match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        rest = f"mid.attn_1.{_rename(match[1], _VAE_ATTENTION)}"
    return f"{coder}.{rest}"


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def clip_to_ldm(state: Mapping[str, Tensor]) -> StateDict:
    """A transformers `CLIPTextModel` state → the HF-CLIP layout LDM embeds (no prefix).

    transformers 5 saves `CLIPTextModel` without its `text_model.` wrapper, but the LDM
    layout (and the loader's detection of a CLIP encoder) expects it.
    """
    return {
        key if key.startswith(("text_model.", "text_projection")) else f"text_model.{key}": value
        for key, value in state.items()
    }


# transformers CLIP names → OpenCLIP names, inside `text_model.encoder.layers.N.`.
_OPEN_CLIP_LAYER = (
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("self_attn.out_proj", "attn.out_proj"),
)
_OPEN_CLIP_TOP_LEVEL = {
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_CLIP_LAYER = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)")
_QKV = ("q_proj", "k_proj", "v_proj")


def open_clip_to_ldm(state: Mapping[str, Tensor]) -> StateDict:
    """A transformers `CLIPTextModelWithProjection` state → OpenCLIP's layout (no prefix).

    OpenCLIP keeps attention as one fused `in_proj` (q, k, v stacked) and the projection
    as a bare matrix applied as `x @ text_projection`, the transpose of a linear weight.
    """
    import torch

    converted: StateDict = {"text_projection": state["text_projection.weight"].T.contiguous()}
    fused: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        if key in _OPEN_CLIP_TOP_LEVEL:
            converted[_OPEN_CLIP_TOP_LEVEL[key]] = value
        elif match := _CLIP_LAYER.fullmatch(key):
            layer, rest = match[1], match[2]
            module, _, param = rest.rpartition(".")
            projection = module.removeprefix("self_attn.")
            if projection in _QKV:
                fused.setdefault(f"transformer.resblocks.{layer}.attn.in_proj_{param}", {})[
                    projection
                ] = value
            else:
                converted[f"transformer.resblocks.{layer}.{_rename(rest, _OPEN_CLIP_LAYER)}"] = (
                    value
                )
        elif key not in ("text_projection.weight", "text_model.embeddings.position_ids"):
            raise ValueError(f"no OpenCLIP name for text encoder key {key!r}")
    for key, parts in fused.items():
        converted[key] = torch.cat([parts[name] for name in _QKV])
    return converted


def _rename(rest: str, pairs: tuple[tuple[str, str], ...]) -> str:
    module, _, param = rest.rpartition(".")
    for old, new in pairs:
        if module == old:
            return f"{new}.{param}"
    return rest


def _prefixed(prefix: str, state: Mapping[str, Tensor]) -> StateDict:
    return {prefix + key: value for key, value in state.items()}


def _load_component(folder: Path) -> tuple[StateDict, dict[str, Any]]:
    """A saved component's weights and config; tiny models are never sharded."""
    from safetensors.torch import load_file

    weights = sorted(folder.glob("*.safetensors"))
    if len(weights) != 1:
        raise ValueError(f"expected one .safetensors file in {folder}, found {len(weights)}")
    return load_file(str(weights[0])), _read_json(folder / "config.json")


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data
