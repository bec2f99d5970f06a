"""The baseline murano's scheduler is measured against: the image server anyone would write
first. FastAPI + diffusers, one global lock, one pipeline call per request (no batching),
then the same encode murano uses (the request's `format`, WebP by default); JSON with base64
images, like murano's answer.

Two ways of calling the pipeline (`--handler`):

* `device-thread` (the default, the baseline the targets use): an async handler hands the
  call to one dedicated thread, as murano's engine does, so that the comparison isolates
  what batching and pipelining add.
* `thread-pool`: a plain `def` handler, which FastAPI runs on its thread pool, so each
  request may call torch from a different thread. Every such thread gets its own OpenMP
  worker pool, and on a small CPU those pools fight over the cores; shown for information.

    .venv/bin/python benchmarks/naive_server.py --model-dir DIR --port PORT [--handler H]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from murano.imaging.encode import ImageFormat

__all__ = ["HANDLERS", "GenerateRequest", "create_app", "main"]

HANDLERS = ("device-thread", "thread-pool")


class GenerateRequest(BaseModel):
    """The fields of murano's request the benchmark sends; others are ignored."""

    prompt: str
    width: int = 512
    height: int = 512
    steps: int = 4
    cfg_scale: float = 1.0
    seed: int = 0
    format: ImageFormat = "webp"


def create_app(model_dir: Path, handler: str = "device-thread", device: str = "cpu") -> FastAPI:
    import torch
    from _models import load_pipeline
    from PIL.Image import Image

    from murano.imaging.encode import encode

    pipe = load_pipeline(model_dir, device)
    lock = threading.Lock()
    app = FastAPI()

    def generate_image(body: GenerateRequest) -> Image:
        with lock, torch.inference_mode():
            image: Image = pipe(
                prompt=[body.prompt],
                width=body.width,
                height=body.height,
                num_inference_steps=body.steps,
                guidance_scale=body.cfg_scale,
                generator=[torch.Generator("cpu").manual_seed(body.seed)],
                output_type="pil",
            ).images[0]
        return image

    def answer(data: bytes) -> dict[str, Any]:
        return {"images": [base64.b64encode(data).decode()]}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    if handler == "thread-pool":

        @app.post("/api/v1/image/generate")
        def generate_sync(body: GenerateRequest) -> dict[str, Any]:
            return answer(encode(generate_image(body), body.format))

    else:
        device = ThreadPoolExecutor(1, thread_name_prefix="naive-device")

        @app.post("/api/v1/image/generate")
        async def generate(body: GenerateRequest) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(device, generate_image, body)
            return answer(await loop.run_in_executor(None, encode, image, body.format))

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description="naive one-request-at-a-time image server")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--handler", choices=HANDLERS, default=HANDLERS[0])
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (bfloat16)")
    args = parser.parse_args(argv)
    app = create_app(args.model_dir, args.handler, args.device)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
