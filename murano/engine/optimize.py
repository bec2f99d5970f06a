"""A model entry's speed settings (`[models.optimize]`, `murano.catalog.optimize`) applied to
a loaded diffusers pipeline, with diffusers' own APIs, in this order:

1. quantize       weights, while `from_pretrained` reads them (`quantization_config`:
                  torchao `float8wo`/`float8dq`/`int8wo`, bitsandbytes `nf4`), per
                  component
2. attention      `set_attention_backend` on the denoiser
3. channels_last  the UNet's and the VAE's convolutions
4. vae            `enable_tiling` / `enable_slicing`
5. cache          `enable_cache` with the diffusers cache config (first-block, taylorseer,
                  magcache, faster)
6. compile        `compile_repeated_blocks` (regional) or `torch.compile` of the denoiser
7. warmup         one pipeline call per warm-up shape, so compiling and autotuning happen
                  inside the load (a model is RESIDENT only when warm, and `/readyz` is 503
                  until the default model is)

Quantizing first means the later steps see the weights they will run with; the cache's
hooks go on before compiling so the compiled blocks are the hooked ones. Before any LoRA
is loaded, a compiled model with LoRAs gets diffusers' LoRA hotswap preparation, so that
changing `lora_strength` does not trigger a recompile.

A setting that cannot be honoured here (a backend that is not installed or not for this
device, a quantization the device cannot run, a cache the family's pipeline does not drive)
raises `OptimizeError` naming the setting: the load fails with that reason, the server goes on.
Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
from collections.abc import Iterator
from typing import Any

from murano.catalog.entries import ModelEntry
from murano.catalog.optimize import CacheSettings, OptimizeSettings, QuantizeKind
from murano.engine.params import GenerationParams

__all__ = [
    "OptimizeError",
    "apply",
    "cache_config",
    "cache_off",
    "denoiser",
    "load_kwargs",
    "prepare_lora_hotswap",
    "quantization_config",
    "torchao_config",
    "warm_up",
    "warmup_params",
]

log = logging.getLogger("murano.engine")

# Attention backends that run on any device; the rest of diffusers' list needs CUDA (or an
# NPU/XLA device murano does not place models on).
_PORTABLE_BACKENDS = frozenset({"native", "_native_math"})
# Components whose classes come from diffusers; the others (text encoders) from transformers.
_DIFFUSERS_COMPONENTS = ("transformer", "unet", "vae", "controlnet", "prior")
_MMDIT_ATTENTION = ("transformer_blocks.*attn", "single_transformer_blocks.*attn")
_WARMUP_STEPS = 2
_WARMUP_SEED = 1


class OptimizeError(ValueError):
    """A speed setting this model, family or device cannot honour. The message names the
    setting (`optimize.<key>`) and what would work."""


def _fail(entry: ModelEntry, key: str, why: str) -> OptimizeError:
    return OptimizeError(f"model {entry.id!r}: optimize.{key}: {why}")


# -- 1. quantize -------------------------------------------------------------------------


def load_kwargs(entry: ModelEntry, pipeline_cls: Any, device: str, dtype: Any) -> dict[str, Any]:
    """Before any weights are read: refuse what this pipeline class or device cannot do (so
    a bad setting costs no load), and `from_pretrained`'s `quantization_config`."""
    settings = entry.optimize
    if settings.cache is not None and "cache_context" not in inspect.getsource(
        pipeline_cls.__call__
    ):
        raise _no_cache(entry, pipeline_cls.__name__)
    if settings.attention is not None:
        _check_backend_name(entry, settings.attention, device)
    quantization = quantization_config(entry, device, dtype)
    return {} if quantization is None else {"quantization_config": quantization}


def quantization_config(entry: ModelEntry, device: str, dtype: Any) -> Any | None:
    """diffusers' `PipelineQuantizationConfig` for the entry's `quantize` table (None when
    it has none), for `from_pretrained(quantization_config=...)`."""
    wanted = entry.optimize.quantize
    if not wanted:
        return None
    if entry.source.endswith(".safetensors"):
        raise _fail(
            entry,
            "quantize",
            "works on diffusers-format sources only, not on one .safetensors file",
        )
    diffusers: Any = importlib.import_module("diffusers")
    mapping = {
        name: _component_quant(entry, name, kind, device, dtype) for name, kind in wanted.items()
    }
    return diffusers.PipelineQuantizationConfig(quant_mapping=mapping)


def _component_quant(
    entry: ModelEntry, name: str, kind: QuantizeKind, device: str, dtype: Any
) -> Any:
    is_diffusers = name.startswith(_DIFFUSERS_COMPONENTS)
    key = f"quantize.{name}"
    if kind == "nf4":
        return _nf4(entry, key, device, dtype, is_diffusers)
    if kind.startswith("float8"):
        _need_fp8_device(entry, key, device, kind)
    try:
        ao_config = torchao_config(kind)
    except ImportError as exc:
        raise _fail(
            entry,
            key,
            f"{kind} needs torchao (pip install 'murano-server[speed]'): {exc}",
        ) from exc
    return _library(is_diffusers).TorchAoConfig(ao_config)


def torchao_config(kind: str) -> Any:
    """The torchao config of a `quantize` kind (ImportError without torchao)."""
    ao: Any = importlib.import_module("torchao.quantization")
    if kind == "float8wo":
        return ao.Float8WeightOnlyConfig()
    if kind == "float8dq":
        return ao.Float8DynamicActivationFloat8WeightConfig(granularity=ao.PerRow())
    return ao.Int8WeightOnlyConfig()


def _nf4(entry: ModelEntry, key: str, device: str, dtype: Any, is_diffusers: bool) -> Any:
    if not device.startswith("cuda"):
        raise _fail(
            entry, key, f"nf4 (bitsandbytes) needs a CUDA device; this model runs on {device}"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise _fail(entry, key, "nf4 needs bitsandbytes (pip install bitsandbytes)")
    return _library(is_diffusers).BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )


def _need_fp8_device(entry: ModelEntry, key: str, device: str, kind: str) -> None:
    import torch

    if not device.startswith("cuda"):
        raise _fail(
            entry, key, f"{kind} needs a CUDA GPU; this model runs on {device} (use int8wo)"
        )
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if (major, minor) < (8, 9):
        raise _fail(
            entry,
            key,
            f"{kind} needs compute capability 8.9 or newer (Ada, Hopper); {device} has"
            f" {major}.{minor} (use int8wo)",
        )


def _library(is_diffusers: bool) -> Any:
    import diffusers
    import transformers

    return diffusers if is_diffusers else transformers


def check_quantized(pipe: Any, entry: ModelEntry) -> None:
    """Every component the entry quantizes exists in the pipeline (diffusers skips names it
    does not know without a word)."""
    for name in entry.optimize.quantize:
        if name not in pipe.components or pipe.components[name] is None:
            have = ", ".join(sorted(n for n, c in pipe.components.items() if _is_module(c)))
            raise _fail(entry, f"quantize.{name}", f"the pipeline has no {name}; it has {have}")


def _is_module(value: Any) -> bool:
    import torch

    return isinstance(value, torch.nn.Module)


# -- the rest, after the weights are on their device ---------------------------------------


def denoiser(pipe: Any) -> Any:
    """The pipeline's transformer, or its UNet."""
    found = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if found is None:
        raise ValueError(f"{type(pipe).__name__} has neither a transformer nor a unet")
    return found


def prepare_lora_hotswap(pipe: Any, entry: ModelEntry) -> None:
    """Before the entry's LoRAs load: on a compiled model, make adapter scales tensors
    (diffusers' `enable_lora_hotswap`) so a new `lora_strength` changes values, not code."""
    settings = entry.optimize
    if settings.compile is None or not any(not lora.fixed for lora in entry.loras):
        return
    if hasattr(pipe, "enable_lora_hotswap"):
        # The rank must cover every adapter's; 128 is diffusers' documented upper example.
        pipe.enable_lora_hotswap(target_rank=128)


def apply(pipe: Any, entry: ModelEntry, device: str) -> None:
    """Steps 2–6 of the module docstring, on a pipeline already on `device`."""
    settings = entry.optimize
    if settings.empty:
        return
    check_quantized(pipe, entry)
    model = denoiser(pipe)
    if settings.attention is not None:
        _set_attention(model, entry, settings.attention, device)
    if settings.channels_last:
        _channels_last(pipe)
    if settings.vae_tiling or settings.vae_slicing:
        _vae(pipe, entry, settings)
    if settings.cache is not None:
        _check_cache_support(pipe, entry)
        model.enable_cache(cache_config(pipe, entry, settings.cache))
    if settings.compile is not None:
        _compile(pipe, model, entry)


def _set_attention(model: Any, entry: ModelEntry, backend: str, device: str) -> None:
    from diffusers.models.attention import AttentionModuleMixin

    _check_backend_name(entry, backend, device)
    if not any(isinstance(m, AttentionModuleMixin) for m in model.modules()):
        if backend == "native":
            return  # what it runs anyway
        raise _fail(
            entry,
            "attention",
            f"the {entry.family} family's {type(model).__name__} does not route attention"
            " through diffusers' backends; only 'native' applies",
        )
    try:
        model.set_attention_backend(backend)
    except (RuntimeError, ValueError, ImportError) as exc:
        raise _fail(entry, "attention", f"backend {backend!r} is not usable here: {exc}") from exc


def _check_backend_name(entry: ModelEntry, backend: str, device: str) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = sorted(name.value for name in AttentionBackendName)
    if backend not in known:
        raise _fail(
            entry, "attention", f"unknown backend {backend!r}; diffusers has {', '.join(known)}"
        )
    if backend.endswith("_hub"):
        raise _fail(
            entry, "attention", f"{backend!r} downloads kernels from the hub; murano never does"
        )
    if backend not in _PORTABLE_BACKENDS and not device.startswith("cuda"):
        raise _fail(
            entry,
            "attention",
            f"backend {backend!r} needs a CUDA device; this model runs on {device}"
            f" (on any device: {', '.join(sorted(_PORTABLE_BACKENDS))})",
        )


def _channels_last(pipe: Any) -> None:
    import torch

    for name in ("unet", "vae"):
        component = getattr(pipe, name, None)
        if component is not None:
            component.to(memory_format=torch.channels_last)


def _vae(pipe: Any, entry: ModelEntry, settings: OptimizeSettings) -> None:
    vae = getattr(pipe, "vae", None)
    for key, on, method in (
        ("vae_tiling", settings.vae_tiling, "enable_tiling"),
        ("vae_slicing", settings.vae_slicing, "enable_slicing"),
    ):
        if not on:
            continue
        if vae is None or not hasattr(vae, method):
            name = type(vae).__name__ if vae is not None else "no VAE"
            raise _fail(entry, key, f"the {entry.family} family's {name} has no {method}()")
        getattr(vae, method)()


def _check_cache_support(pipe: Any, entry: ModelEntry) -> None:
    """diffusers' cache hooks need the denoiser's `enable_cache` and a pipeline that marks
    each denoiser call with `cache_context`; without the second they fail at the first step."""
    model = denoiser(pipe)
    drives = "cache_context" in inspect.getsource(type(pipe).__call__)
    if not hasattr(model, "enable_cache") or not drives:
        raise _no_cache(entry, type(pipe).__name__)


def _no_cache(entry: ModelEntry, pipeline_name: str) -> OptimizeError:
    return _fail(
        entry,
        "cache",
        f"the {entry.family} family's {pipeline_name} does not support diffusers' step"
        " caching in this diffusers version (families that do: flux, qwen-image)",
    )


def cache_config(pipe: Any, entry: ModelEntry, settings: CacheSettings) -> Any:
    """The diffusers cache config for `settings` (options verbatim; unknown ones fail)."""
    hooks: Any = importlib.import_module("diffusers.hooks")
    options: dict[str, Any] = dict(settings.options)
    if settings.threshold is not None:
        options["threshold"] = settings.threshold
    kind = settings.type
    if kind == "first-block":
        cls: Any = hooks.FirstBlockCacheConfig
    elif kind == "taylorseer":
        cls = hooks.TaylorSeerCacheConfig
        options.setdefault("taylor_factors_dtype", _dtype_of(denoiser(pipe)))
    elif kind == "magcache":
        cls = hooks.MagCacheConfig
        options.setdefault("num_inference_steps", entry.constraints.steps.default)
        if "mag_ratios" not in options and entry.family == "flux":
            from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

            options["mag_ratios"] = FLUX_MAG_RATIOS
    else:
        cls = hooks.FasterCacheConfig
        options.setdefault("current_timestep_callback", lambda: pipe.current_timestep)
        options.setdefault("is_guidance_distilled", entry.family == "flux")
        # diffusers' defaults name `attn1` (video models); the image MMDiTs call it `attn`.
        options.setdefault("spatial_attention_block_identifiers", _MMDIT_ATTENTION)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise _fail(entry, "cache", f"{kind}: {exc}") from exc


def _dtype_of(model: Any) -> Any:
    return next(model.parameters()).dtype


def _compile(pipe: Any, model: Any, entry: ModelEntry) -> None:
    settings = entry.optimize.compile
    assert settings is not None
    kwargs: dict[str, Any] = {"dynamic": settings.dynamic, "fullgraph": settings.fullgraph}
    if settings.torch_mode is not None:
        kwargs["mode"] = settings.torch_mode
    if settings.mode == "regional":
        if not getattr(model, "_repeated_blocks", None):
            raise _fail(
                entry,
                "compile",
                f'{type(model).__name__} names no repeated blocks; use mode = "full"',
            )
        model.compile_repeated_blocks(**kwargs)
    else:
        model.compile(**kwargs)


# -- per request ---------------------------------------------------------------------------


@contextlib.contextmanager
def cache_off(pipe: Any, entry: ModelEntry, off: bool) -> Iterator[None]:
    """Run the block with the model's step cache removed when `off` (a request's
    `step_cache: false`, which `check` allows only where the entry does)."""
    settings = entry.optimize.cache
    if not off or settings is None:
        yield
        return
    model = denoiser(pipe)
    config = model._cache_config
    model.disable_cache()
    try:
        yield
    finally:
        model.enable_cache(config)


# -- 7. warmup -----------------------------------------------------------------------------


def warmup_params(entry: ModelEntry) -> list[GenerationParams]:
    """One short call per warm-up shape (and one without the cache where requests may
    turn it off): enough to compile and autotune every path requests will take."""
    settings = entry.optimize
    cfg = entry.family_info.default_cfg if entry.cfg_scale is None else entry.cfg_scale
    steps = min(_WARMUP_STEPS, entry.constraints.steps.max)
    cache_modes = [True]
    if settings.cache is not None and settings.cache.allow_request_off:
        cache_modes.append(False)
    return [
        GenerationParams(
            model_id=entry.id,
            prompt="warm-up",
            negative_prompt=None,
            width=shape.width,
            height=shape.height,
            steps=steps,
            cfg_scale=float(cfg),
            seed=_WARMUP_SEED,
            images=shape.batch,
            lora_strength=None,
            step_cache=cached,
        )
        for shape in settings.warmup
        for cached in cache_modes
    ]


def warm_up(backend: Any, entry: ModelEntry) -> None:
    """Run the warm-up calls through the backend, as requests would run."""
    for params in warmup_params(entry):
        log.info(
            "warming up model %s at %dx%d, batch %d%s",
            entry.id,
            params.width,
            params.height,
            params.images,
            "" if params.step_cache else ", no step cache",
        )
        backend.generate([params])
