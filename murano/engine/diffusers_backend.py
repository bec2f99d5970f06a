"""The real backend: a diffusers pipeline loaded with `from_pretrained` (a hub repo id or a
local directory) or `from_single_file` (one `.safetensors` checkpoint), its LoRAs loaded
once, run one batch at a time with one seeded generator per image.

Loading, in order: the entry's `components` (a text encoder or VAE from elsewhere), the
weights (hub cache, `revision` pin, `HF_TOKEN`, safetensors only; single files take their
component configs from the entry's `config`, a diffusers-format directory or repo of the
same family), the entry's scheduler if it names one, its LoRAs, the family adapter's
`prepare`, then the device (or model CPU offload on cuda), then the entry's speed settings
and warm-up (`murano.engine.optimize`, which also quantizes while the weights load).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from PIL.Image import Image

from murano.catalog.entries import ModelEntry
from murano.engine import optimize
from murano.engine.backend import StepControl
from murano.engine.families import Adapter, adapter_for
from murano.engine.families.base import expand
from murano.engine.lora import LoraScaler, load_loras
from murano.engine.params import GenerationParams
from murano.engine.previews import TinyVaeDecoder

__all__ = [
    "DiffusersBackend",
    "is_single_file",
    "load_backend",
    "load_pipeline",
    "pipeline_memory_bytes",
    "resolve_device",
]

log = logging.getLogger("murano.engine")


def resolve_device(device: str) -> str:
    """`auto` → cuda, then mps, then cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def is_single_file(source: str) -> bool:
    """Whether `source` names one checkpoint file (a path or URL) rather than a diffusers
    folder or repo."""
    return source.endswith(".safetensors")


def _dtype(name: str | None, family_default: str, device: str) -> Any:
    import torch

    # Half precision on a CPU is slow or unsupported for many kernels: use float32 there.
    chosen = "float32" if device == "cpu" else (name or family_default)
    value = getattr(torch, chosen, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {chosen!r}")
    return value


def _component(entry: ModelEntry, name: str, dtype: Any) -> Any:
    import diffusers
    import torch
    import transformers

    spec = entry.components[name]
    cls = getattr(transformers, spec.class_name, None) or getattr(diffusers, spec.class_name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(
            f"model {entry.id!r}: component {name} names {spec.class_name!r}, which is no"
            " transformers or diffusers class"
        )
    kwargs: dict[str, Any] = {"revision": spec.revision, "token": os.environ.get("HF_TOKEN")}
    if spec.subfolder is not None:
        kwargs["subfolder"] = spec.subfolder
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        kwargs["torch_dtype"] = dtype
    log.info("loading %s of model %s from %s", name, entry.id, spec.source)
    return cls.from_pretrained(spec.source, **kwargs)


def _from_weights(entry: ModelEntry, pipeline_cls: Any, dtype: Any, device: str) -> Any:
    token = os.environ.get("HF_TOKEN")
    speed = optimize.load_kwargs(entry, pipeline_cls, device, dtype)
    components = {name: _component(entry, name, dtype) for name in entry.components}
    if is_single_file(entry.source):
        if not entry.family_info.single_file:
            raise ValueError(
                f"model {entry.id!r}: the {entry.family} family does not load from one"
                " .safetensors file; give a diffusers-format directory or repo"
            )
        # A local `config` directory needs no network; a repo id is fetched (or cached).
        config = entry.config
        local = config is not None and Path(config).is_dir()
        return pipeline_cls.from_single_file(
            entry.source,
            config=config,
            torch_dtype=dtype,
            local_files_only=local,
            revision=entry.revision,
            token=token,
            **components,
        )
    return pipeline_cls.from_pretrained(
        entry.source,
        revision=entry.revision,
        torch_dtype=dtype,
        use_safetensors=True,
        token=token,
        **speed,
        **components,
    )


def _set_scheduler(pipe: Any, entry: ModelEntry) -> None:
    import diffusers

    if entry.scheduler is None:
        if entry.scheduler_config:
            pipe.scheduler = type(pipe.scheduler).from_config(
                pipe.scheduler.config, **entry.scheduler_config
            )
        return
    scheduler_cls = getattr(diffusers, entry.scheduler, None)
    if scheduler_cls is None or not hasattr(scheduler_cls, "from_config"):
        raise ValueError(f"model {entry.id!r}: unknown diffusers scheduler {entry.scheduler!r}")
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **entry.scheduler_config)


def load_pipeline(entry: ModelEntry, adapter: Adapter, device: str) -> Any:
    import diffusers

    dtype = _dtype(entry.dtype, entry.family_info.default_dtype, device)
    pipe = _from_weights(entry, getattr(diffusers, adapter.pipeline_class), dtype, device)
    _set_scheduler(pipe, entry)
    optimize.prepare_lora_hotswap(pipe, entry)
    load_loras(pipe, entry)
    adapter.prepare(pipe)
    if entry.cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    optimize.apply(pipe, entry, device)
    return pipe


def pipeline_memory_bytes(pipe: Any) -> int:
    """Bytes of the pipeline's weights as loaded (parameters and buffers of every torch
    component, LoRA layers included), wherever they live."""
    import torch

    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


class DiffusersBackend:
    def __init__(self, entry: ModelEntry, pipeline: Any, adapter: Adapter, device: str) -> None:
        self.model_id = entry.id
        self.entry = entry
        self.pipeline = pipeline
        self.adapter = adapter
        self.device = device
        self.memory_bytes = pipeline_memory_bytes(pipeline)
        self._loras = LoraScaler(entry)
        # Image-to-image and inpainting pipelines made from `pipeline` on first use; they
        # share its components (`from_pipe`), so they add no weights.
        self._derived: dict[str, Any] = {}
        self._preview_vae: TinyVaeDecoder | None = None

    def pipeline_for(self, task: str) -> Any:
        """The pipeline that runs `task`: the loaded one for text-to-image and instruction
        edits, diffusers' image-to-image or inpainting pipeline built from it otherwise."""
        if task in ("generate", "edit"):
            return self.pipeline
        derived = self._derived.get(task)
        if derived is None:
            import diffusers

            auto = {
                "img2img": diffusers.AutoPipelineForImage2Image,
                "inpaint": diffusers.AutoPipelineForInpainting,
            }[task]
            derived = auto.from_pipe(self.pipeline)
            derived.set_progress_bar_config(disable=True)
            self._derived[task] = derived
        return derived

    def generate(
        self, batch: Sequence[GenerationParams], control: StepControl | None = None
    ) -> list[list[Image]]:
        import torch

        if self.pipeline is None:
            raise RuntimeError(f"model {self.model_id} was unloaded")
        head = batch[0]
        _, _, seeds = expand(batch)
        generator_device = "cpu" if self.device == "mps" else self.device
        generators = [torch.Generator(generator_device).manual_seed(seed) for seed in seeds]
        # The batch key keeps jobs of one strength together: the head's is everyone's.
        self._loras.apply(self.pipeline, head.lora_strength)
        pipe = self.pipeline_for(head.task)
        self.adapter.before_call(pipe, batch)
        kwargs = self.adapter.call_kwargs(batch)
        if self.entry.max_sequence_length is not None:
            kwargs["max_sequence_length"] = self.entry.max_sequence_length
        if head.is_edit:
            self.adapter.edit_kwargs(batch, kwargs)
            kwargs = _accepted(pipe, kwargs)
        if control is not None and _takes_step_callback(pipe):
            kwargs["callback_on_step_end"] = _StepCallback(control, kwargs, self._previewer(batch))
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        with (
            torch.inference_mode(),
            optimize.cache_off(self.pipeline, self.entry, not head.step_cache),
        ):
            output = pipe(**kwargs, generator=generators, output_type="pil")
        images: list[Image] = list(output.images)
        if len(images) != len(seeds):
            raise RuntimeError(f"pipeline returned {len(images)} images for {len(seeds)}")
        result, offset = [], 0
        for params in batch:
            result.append(images[offset : offset + params.images])
            offset += params.images
        return result

    def _previewer(self, batch: Sequence[GenerationParams]) -> Callable[[Any], list[Image]]:
        """Cheap previews of this batch's latents (`murano.engine.previews`): the family's
        latent-to-RGB projection, or the entry's tiny VAE, loaded on first use."""
        from murano.engine.previews import TinyVaeDecoder, preview_images

        if self.entry.preview_vae is not None and self._preview_vae is None:
            self._preview_vae = TinyVaeDecoder(self.entry.preview_vae, device=self.device)
        decoder, family = self._preview_vae, self.entry.family
        width, height = batch[0].width, batch[0].height
        return partial(preview_images, family, width=width, height=height, decoder=decoder)

    def unload(self) -> None:
        import gc

        import torch

        self.pipeline = None
        self._derived.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_backend(entry: ModelEntry) -> DiffusersBackend:
    adapter = adapter_for(entry.family)
    device = resolve_device(entry.device)
    backend = DiffusersBackend(entry, load_pipeline(entry, adapter, device), adapter, device)
    optimize.warm_up(backend, entry)
    return backend


def _accepted(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` without the arguments `pipe` does not name (Stable Diffusion's
    image-to-image takes no width or height: its input image sets the size)."""
    named = inspect.signature(pipe.__call__).parameters
    return {name: value for name, value in kwargs.items() if name in named}


def _takes_step_callback(pipe: Any) -> bool:
    return "callback_on_step_end" in inspect.signature(pipe.__call__).parameters


class _StepCallback:
    """diffusers' `callback_on_step_end`: reports each step to the scheduler's
    `StepControl`, and sets the pipeline's interrupt flag when it says stop (the pipeline
    then skips its remaining steps)."""

    def __init__(
        self,
        control: StepControl,
        call_kwargs: dict[str, Any],
        previewer: Callable[[Any], list[Image]] | None = None,
    ) -> None:
        self.control = control
        self.steps = int(call_kwargs.get("num_inference_steps", 0))
        self.previewer = previewer

    def __call__(
        self, pipe: Any, step_index: int, _timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        latents = tensors.get("latents")
        steps = self.steps or int(getattr(pipe, "num_timesteps", 0))
        preview = None
        if latents is not None:
            make = self.previewer or (lambda current: _decode_preview(pipe, current))
            preview = partial(make, latents)
        if not self.control.on_step(step_index + 1, steps, preview):
            pipe._interrupt = True
        return tensors


def _decode_preview(pipe: Any, latents: Any) -> list[Image]:
    """The batch's current images, decoded from its latents with the pipeline's VAE where
    they have the VAE's own layout (SD-style 4-d latents); nothing otherwise."""
    import torch

    vae = getattr(pipe, "vae", None)
    processor = getattr(pipe, "image_processor", None)
    if vae is None or processor is None or latents.ndim != 4:
        return []
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    with torch.inference_mode():
        decoded = vae.decode(latents.to(vae.dtype) / scale + shift, return_dict=False)[0]
    images: list[Image] = processor.postprocess(decoded, output_type="pil")
    return images
