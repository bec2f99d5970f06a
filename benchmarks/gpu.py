"""GPU benchmark: murano's speed settings on full-size architectures, and murano as a server
against the offline ceiling and a naive server, on one CUDA GPU.

    python benchmarks/gpu.py                    # the full run, for one H100/H200 (~15 min)
    python benchmarks/gpu.py --smoke --out DIR  # tiny models on the CPU: checks the script

What it measures, in one run on one device:

1. Seconds per image at batch 1, 1024², for FLUX.1-dev (28 steps), Z-Image-Turbo (8 steps)
   and SDXL (30 steps), each in five configurations applied with murano's own code
   (`murano.engine.optimize`): baseline (bf16, SDPA), + step cache (first-block), + regional
   compile, + fp8 (torchao float8 weights and activations, per row), and all of them
   together; with peak GPU memory per configuration and, for the cache, the share of
   transformer-block work it skipped. A setting a family does not support (step caching
   outside flux and qwen-image in this diffusers) is shown as such, not measured.
2. murano at 1, 4 and 16 concurrent clients on the SDXL shape (1024², 4 steps, no CFG: the
   comparison is about serving, so each image is short), against the same pipeline called
   offline with the same batch size (the ceiling) and the naive one-request-at-a-time
   server of `naive_server.py`, as ratios measured in the same run.

The weights are random, built on the device from the published configs typed in below (the
hub is unreachable from the benchmark machines), so every matmul and attention has the real
model's shape and cost. What random weights make uncertain: how often a step cache skips
work depends on how much real activations change from step to step, so the "+ cache" and
"all" rows (and so the 1.5 s/image FLUX target) are only indicative until re-run on real
weights; compile, fp8 and the server ratios do not depend on the weights' values. Text
encoders run once per image with short prompts (tiny local tokenizers, full-size encoders).

Each stage checks a time budget (`--budget-s`, default 500 s) and is skipped, and reported
as skipped, when the budget is spent (a stage already started can overrun it: on an H200 each
FLUX configuration took 37-118 s to build and warm, so give the full run ~15 minutes); results go to
`benchmarks/results/gpu.md` (or `--out`) with the GPU named.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
    RESULTS_DIR,
    ServerSpec,
    Table,
    fmt,
    free_port,
    murano_spec,
    running_servers,
    write_result,
)

PROMPT = "a lighthouse on a cliff at dusk, volumetric light, highly detailed"
FLUX_TARGET_S = 1.5

# -- published configs (diffusers / transformers config.json of each model) ----------------

FLUX_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_VAE = {
    "latent_channels": 16,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
SDXL_VAE = {
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "scaling_factor": 0.13025,
    "force_upcast": False,
}
CLIP_L = {  # openai/clip-vit-large-patch14 text tower
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
CLIP_BIG_G = {  # SDXL's text_encoder_2 (OpenCLIP ViT-bigG)
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
T5_XXL = {  # google/t5-v1_1-xxl encoder
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
}
Z_IMAGE_TRANSFORMER = {  # Tongyi-MAI/Z-Image-Turbo
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 2560,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
}
QWEN3_4B = {
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rope_theta": 1_000_000.0,
}
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}


# -- building the pipelines ----------------------------------------------------------------


def _clip(tokenizer: Any, config: dict[str, Any], projection: bool) -> Any:
    import transformers

    cfg = transformers.CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    name = "CLIPTextModelWithProjection" if projection else "CLIPTextModel"
    return getattr(transformers, name)(cfg).eval()


def _vae(config: dict[str, Any]) -> Any:
    import diffusers

    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32,
        **config,
    ).eval()


def full_flux(tiny: Any) -> Any:
    import diffusers
    import transformers

    t5 = transformers.T5EncoderModel(
        transformers.T5Config(vocab_size=32128, is_encoder_decoder=False, **T5_XXL)
    ).eval()
    return diffusers.FluxPipeline(
        scheduler=tiny.scheduler,
        vae=_vae(FLUX_VAE),
        text_encoder=_clip(tiny.tokenizer, CLIP_L, projection=False),
        tokenizer=tiny.tokenizer,
        text_encoder_2=t5,
        tokenizer_2=tiny.tokenizer_2,
        transformer=diffusers.FluxTransformer2DModel(**FLUX_TRANSFORMER).eval(),
    )


def full_z_image(tiny: Any) -> Any:
    import diffusers
    import transformers

    tok = tiny.tokenizer
    encoder = transformers.Qwen3Model(
        transformers.Qwen3Config(
            vocab_size=151936,
            bos_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **QWEN3_4B,
        )
    ).eval()
    transformer = diffusers.ZImageTransformer2DModel(**Z_IMAGE_TRANSFORMER).eval()
    return diffusers.ZImagePipeline(
        scheduler=tiny.scheduler,
        vae=_vae(FLUX_VAE),
        text_encoder=encoder,
        tokenizer=tok,
        transformer=transformer,
    )


def full_sdxl(tiny: Any) -> Any:
    import diffusers

    return diffusers.StableDiffusionXLPipeline(
        vae=_vae(SDXL_VAE),
        text_encoder=_clip(tiny.tokenizer, CLIP_L, projection=False),
        text_encoder_2=_clip(tiny.tokenizer_2, CLIP_BIG_G, projection=True),
        tokenizer=tiny.tokenizer,
        tokenizer_2=tiny.tokenizer_2,
        unet=diffusers.UNet2DConditionModel(**SDXL_UNET).eval(),
        scheduler=tiny.scheduler,
        force_zeros_for_empty_prompt=True,
    )


def tiny_pipeline(family: str) -> Any:
    from murano.engine.tiny.flux import flux_pipeline
    from murano.engine.tiny.sdxl import sdxl_pipeline
    from murano.engine.tiny.z_image import z_image_pipeline

    return {"flux": flux_pipeline, "z-image": z_image_pipeline, "sdxl": sdxl_pipeline}[family]()


@dataclass(frozen=True)
class Shape:
    """One model the benchmark runs, at its published sampling settings."""

    name: str
    family: str
    steps: int
    cfg: float
    # The full-size pipeline, given the tiny one of its family (tokenizers, scheduler).
    build: Callable[[Any], Any]


SHAPES = (
    Shape("FLUX.1-dev", "flux", 28, 3.5, full_flux),
    Shape("Z-Image-Turbo", "z-image", 8, 0.0, full_z_image),
    Shape("SDXL", "sdxl", 30, 5.0, full_sdxl),
)


def full_size(shape: Shape, tiny: Any, device: str) -> Any:
    """The full-size pipeline with random bf16 weights made on `device` (seconds, no host
    copy; "meta" builds the shapes alone, to check the configs anywhere)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            return shape.build(tiny)
    finally:
        torch.set_default_dtype(previous)


def parameter_counts(shape: Shape) -> dict[str, int]:
    """Parameters per component of the full-size shape, built on the meta device."""
    import torch

    pipe = full_size(shape, tiny_pipeline(shape.family), "meta")
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }


@dataclass(frozen=True)
class Mode:
    """Full size on CUDA, or the smoke run's tiny models on the CPU."""

    smoke: bool
    device: str
    size: int
    budget_s: float
    repeats: int
    server_size: int
    server_steps: int
    clients: tuple[int, ...]
    round_s: float

    @property
    def dtype(self) -> Any:
        import torch

        return torch.float32 if self.smoke else torch.bfloat16


def build(shape: Shape, mode: Mode) -> Any:
    pipe = tiny_pipeline(shape.family)
    if not mode.smoke:
        pipe = full_size(shape, pipe, mode.device)
    pipe.to(mode.device, mode.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- configurations -------------------------------------------------------------------------

CACHE = {"type": "first-block", "threshold": 0.08}
# Families whose diffusers pipelines drive the cache hooks (see murano.engine.optimize).
CACHE_FAMILIES = ("flux", "qwen-image")
COMPILE = {"mode": "regional", "dynamic": True}
FP8 = "float8dq"
CONFIGS: dict[str, dict[str, Any]] = {
    "baseline (bf16, SDPA)": {},
    "+ cache (first-block 0.08)": {"cache": CACHE},
    "+ compile (regional)": {"compile": COMPILE},
    "+ fp8 (float8dq)": {"quantize": FP8},
    "all": {"cache": CACHE, "compile": COMPILE, "quantize": FP8},
}


@dataclass
class Row:
    config: str
    seconds: float = math.nan
    peak_gb: float = math.nan
    work: float = math.nan  # share of the baseline's block work actually computed
    note: str = ""


def _entry(shape: Shape, mode: Mode, settings: dict[str, Any]) -> Any:
    from murano.catalog.entries import build_entry

    optimize = {k: v for k, v in settings.items() if k != "quantize"}
    raw = {"id": shape.family, "source": "/in-memory", "optimize": optimize, "device": mode.device}
    return build_entry(raw, family=shape.family)


def _call(pipe: Any, shape: Shape, mode: Mode, steps: int, seed: int = 1) -> float:
    import torch

    kwargs: dict[str, Any] = {
        "prompt": [PROMPT],
        "width": mode.size,
        "height": mode.size,
        "num_inference_steps": steps,
        "guidance_scale": shape.cfg,
        "generator": [torch.Generator("cpu").manual_seed(seed)],
        "output_type": "pil",
    }
    _sync(mode)
    began = time.perf_counter()
    with torch.inference_mode():
        pipe(**kwargs)
    _sync(mode)
    return time.perf_counter() - began


def _sync(mode: Mode) -> None:
    import torch

    if mode.device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(mode: Mode) -> None:
    import torch

    if mode.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(mode: Mode) -> float:
    import torch

    if not mode.device.startswith("cuda"):
        return math.nan
    return torch.cuda.max_memory_allocated() / 2**30


@contextlib.contextmanager
def _counting(pipe: Any) -> Iterator[list[int]]:
    """Counts attention query projections computed (skipped blocks compute none)."""
    from murano.engine.optimize import denoiser

    calls = [0]
    handles = [
        module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        for name, module in denoiser(pipe).named_modules()
        if name.endswith("to_q")
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _undo(pipe: Any) -> None:
    """Back to eager and uncached (quantization stays: fp8 configurations come last)."""
    from murano.engine.optimize import denoiser

    model = denoiser(pipe)
    if getattr(model, "is_cache_enabled", False):
        model.disable_cache()
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
    import torch

    torch._dynamo.reset()


def _quantize(pipe: Any) -> None:
    from torchao.quantization import quantize_

    from murano.engine.optimize import denoiser, torchao_config

    # What `quantize = { transformer = "float8dq" }` has diffusers do while loading.
    quantize_(denoiser(pipe), torchao_config(FP8))


class Clock:
    def __init__(self, budget_s: float) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s

    @property
    def spent(self) -> bool:
        return time.monotonic() - self.start > self.budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def bench_shape(shape: Shape, mode: Mode, clock: Clock, log: Callable[[str], None]) -> list[Row]:
    from murano.engine import optimize

    rows = [Row(name) for name in CONFIGS]
    if clock.spent:
        for row in rows:
            row.note = "skipped: time budget spent"
        return rows
    steps = 2 if mode.smoke else shape.steps
    pipe = build(shape, mode)
    baseline_work = math.nan
    quantized = False
    try:
        for row, settings in zip(rows, CONFIGS.values(), strict=True):
            if clock.spent:
                row.note = "skipped: time budget spent"
                continue
            if "cache" in settings and shape.family not in CACHE_FAMILIES:
                if len(settings) == 1:
                    row.note = (
                        f"not supported: diffusers' {shape.family} pipeline has no cache hooks"
                    )
                    continue
                settings = {k: v for k, v in settings.items() if k != "cache"}
                row.note = "without the cache (not supported by this family)"
            entry = _entry(shape, mode, settings)
            if "quantize" in settings and not mode.device.startswith("cuda"):
                row.note = "needs a CUDA GPU (fp8)"
                continue
            if "compile" in settings and mode.smoke:
                row.note = "not in smoke mode (CPU compile takes minutes)"
                continue
            _undo(pipe)
            try:
                if "quantize" in settings and not quantized:
                    _quantize(pipe)
                    quantized = True
                optimize.apply(pipe, entry, mode.device)
            except (optimize.OptimizeError, ImportError, RuntimeError) as exc:
                row.note = f"not applied: {exc}"
                continue
            _peak_reset(mode)
            _call(pipe, shape, mode, steps)  # warm-up: compiles, autotunes
            # Count the work of eager runs only: hooks in compiled blocks would recompile them.
            counting = _counting(pipe) if "compile" not in settings else contextlib.nullcontext([0])
            with counting as calls:
                times = [_call(pipe, shape, mode, steps, seed=2 + i) for i in range(mode.repeats)]
            row.seconds = statistics.median(times)
            row.peak_gb = _peak_gb(mode)
            if "compile" not in settings:
                baseline_work = calls[0] if not settings else baseline_work
                row.work = calls[0] / baseline_work
            log(f"{shape.name} {row.config}: {row.seconds:.3f} s/image ({clock.elapsed():.0f} s)")
    finally:
        del pipe
        gc.collect()
        _peak_reset(mode)
    return rows


# -- serving: murano vs the offline ceiling vs a naive server --------------------------------


@dataclass
class ServeLevel:
    clients: int
    rates: dict[str, float] = field(default_factory=dict)


def bench_serving(
    mode: Mode, clock: Clock, work: Path, log: Callable[[str], None]
) -> list[ServeLevel]:
    import throughput
    from _models import load_pipeline

    if clock.spent:
        return []
    shape = SHAPES[2]  # SDXL: the serving comparison needs no cache or compile
    model_dir = work / "sdxl"
    build(shape, mode).save_pretrained(model_dir)
    gc.collect()
    models_file = work / "models.toml"
    models_file.write_text(
        f'[[models]]\nid = "sdxl"\nsource = "{model_dir}"\nfamily = "sdxl"\n'
        f'device = "{mode.device}"\ndtype = "bfloat16"\n'
        '[models.model_spec]\nname = "SDXL-shaped (random weights)"\n'
        "constraints = { steps = { default = 4, max = 50 } }\n",
        encoding="utf-8",
    )
    max_batch = max(mode.clients)
    env = {"MURANO_MAX_BATCH_IMAGES": str(max_batch), "MURANO_MAX_QUEUE": str(4 * max_batch)}
    naive_port = free_port()
    naive_script = str(Path(__file__).with_name("naive_server.py"))
    naive = ServerSpec(
        [
            *(PYTHON, naive_script, "--model-dir", str(model_dir)),
            "--port",
            str(naive_port),
            "--device",
            mode.device,
        ],
        naive_port,
        work / "naive.log",
    )
    murano = murano_spec(work / "data", models_file=models_file, env=env)
    body = {
        "model": "sdxl",
        "prompt": PROMPT,
        "width": mode.server_size,
        "height": mode.server_size,
        "steps": mode.server_steps,
        "cfg_scale": 1.0,
        "format": "webp",
        "safe_mode": False,
        "hide_watermark": True,
    }
    levels: list[ServeLevel] = []
    with running_servers(murano, naive) as (murano_base, naive_base):
        offline = throughput.Offline(load_pipeline(model_dir, mode.device), mode.server_steps, 1.0)
        for base in (murano_base, naive_base):
            asyncio.run(throughput._drive(base, max_batch, 0.0, body))
        for clients in mode.clients:
            if clock.spent:
                break
            level = ServeLevel(clients)
            batch = min(clients, max_batch)
            offline.call(batch, mode.server_size, 0)
            ceiling = offline.loop(batch, mode.server_size, mode.round_s)
            level.rates["ceiling"] = ceiling.images_per_s
            for way, base in (("murano", murano_base), ("naive", naive_base)):
                load = asyncio.run(throughput._drive(base, clients, mode.round_s, body))
                level.rates[way] = load.images_per_s
            levels.append(level)
            log(f"serving, {clients} clients: {level.rates}")
    return levels


# -- report ---------------------------------------------------------------------------------


def _device_name(mode: Mode) -> str:
    import torch

    if mode.device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(mode.device))
    return "CPU (smoke run: tiny models; numbers mean nothing)"


def _speed_table(rows: list[Row]) -> Table:
    base = rows[0].seconds
    body = []
    for row in rows:
        speedup = base / row.seconds if row.seconds == row.seconds else math.nan
        body.append(
            [
                row.config,
                fmt(row.seconds),
                "n/a" if math.isnan(speedup) else f"{speedup:.2f}×",
                fmt(row.peak_gb, 1),
                "n/a" if math.isnan(row.work) else f"{row.work:.0%}",
                row.note,
            ]
        )
    headers = ["configuration", "s/image", "vs baseline", "peak GB", "block work", "note"]
    return Table(headers, body)


def _serve_table(levels: list[ServeLevel]) -> Table:
    rows = []
    for level in levels:
        r = level.rates
        rows.append(
            [
                str(level.clients),
                fmt(r["murano"], 2),
                fmt(r["ceiling"], 2),
                fmt(r["naive"], 2),
                f"{r['murano'] / r['ceiling']:.2f}×",
                f"{r['murano'] / r['naive']:.2f}×",
            ]
        )
    headers = ["clients", "murano img/s", "ceiling img/s", "naive img/s"]
    return Table([*headers, "murano / ceiling", "murano / naive"], rows)


def report(mode: Mode, results: dict[str, list[Row]], serving: list[ServeLevel]) -> str:
    parts = [f"Device: **{_device_name(mode)}**, {mode.size}², batch 1, random weights."]
    for shape in SHAPES:
        rows = results.get(shape.name)
        if rows is None:
            continue
        steps = 2 if mode.smoke else shape.steps
        parts.append(f"## {shape.name} ({steps} steps)\n\n{_speed_table(rows).markdown()}")
    flux = results.get("FLUX.1-dev")
    if flux and not mode.smoke:
        best = min((r.seconds for r in flux if r.seconds == r.seconds), default=math.nan)
        met = "met" if best <= FLUX_TARGET_S else "missed"
        parts.append(
            f"FLUX.1-dev target ≤ {FLUX_TARGET_S} s/image with the settings combined: **{met}**"
            f" (best {fmt(best)} s). The cache's share of it is uncertain with random weights."
        )
    if serving:
        size, steps = mode.server_size, mode.server_steps
        parts.append(
            f"## Serving (SDXL shape, {size}², {steps} steps, no CFG)\n\n"
            + _serve_table(serving).markdown()
        )
    parts.append(
        'Random weights: the step cache\'s skips ("block work") depend on real activations;'
        " compile, fp8 and the serving ratios do not."
    )
    return "\n\n".join(parts)


def run(
    mode: Mode,
    out: Path,
    log: Callable[[str], None] = print,
    only: frozenset[str] = frozenset(),
) -> Path:
    """Every stage, or only the named ones (`only`: shape names and "serving")."""
    clock = Clock(mode.budget_s)
    results: dict[str, list[Row]] = {}
    serving: list[ServeLevel] = []
    # The FLUX target first, then serving, then the other shapes, so that a spent budget
    # cuts what matters least.
    for stage in (SHAPES[0].name, "serving", *(shape.name for shape in SHAPES[1:])):
        if only and stage not in only:
            if stage != "serving":
                results[stage] = [
                    Row(name, note="not run: another stage was asked for") for name in CONFIGS
                ]
            continue
        if stage == "serving":
            with tempfile.TemporaryDirectory(prefix="murano-gpu-") as tmp:
                serving = bench_serving(mode, clock, Path(tmp), log)
        else:
            shape = next(shape for shape in SHAPES if shape.name == stage)
            results[stage] = bench_shape(shape, mode, clock, log)
    title = "GPU benchmark" + (" (smoke run)" if mode.smoke else "")
    return write_result(out, "gpu", title, report(mode, results, serving))


FULL = Mode(
    smoke=False,
    device="cuda",
    size=1024,
    # Each stage starts only within the budget, and one configuration (a compile, at
    # most about two minutes on an H200) can overrun it.
    budget_s=500,
    repeats=2,
    server_size=1024,
    server_steps=4,
    clients=(1, 4, 16),
    round_s=6.0,
)
SMOKE = Mode(
    smoke=True,
    device="cpu",
    size=64,
    budget_s=600,
    repeats=1,
    server_size=64,
    server_steps=2,
    clients=(1, 4),
    round_s=0.5,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--budget-s", type=float, help="time budget before stages are skipped")
    stages = [shape.name for shape in SHAPES] + ["serving"]
    parser.add_argument("--round-s", type=float, help="seconds per serving round")
    parser.add_argument(
        "--only", action="append", choices=stages, default=[], help="run only this stage"
    )
    args = parser.parse_args(argv)
    mode = SMOKE if args.smoke else FULL
    if args.budget_s is not None:
        mode = replace(mode, budget_s=args.budget_s)
    if args.round_s is not None:
        mode = replace(mode, round_s=args.round_s)
    if not mode.smoke:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: run with --smoke to check the script on a CPU")
            return 2
    path = run(mode, args.out, only=frozenset(args.only))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
