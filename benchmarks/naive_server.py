"""The baseline murano's scheduler is measured against: the image server anyone would write
first. FastAPI + diffusers, one global lock, one pipeline call per request (no batching),
then the same WebP encode murano uses; JSON with base64 images, like murano's answer.

    .venv/bin/python benchmarks/naive_server.py --model-dir DIR --port PORT
"""

from __future__ import annotations

import argparse
import base64
import sys
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

__all__ = ["GenerateRequest", "create_app", "main"]


class GenerateRequest(BaseModel):
    """The fields of murano's request the benchmark sends; others are ignored."""

    prompt: str
    width: int = 512
    height: int = 512
    steps: int = 4
    cfg_scale: float = 1.0
    seed: int = 0


def create_app(model_dir: Path) -> FastAPI:
    import torch
    from _models import load_pipeline

    from murano.imaging.encode import encode

    pipe = load_pipeline(model_dir)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    # A sync handler: FastAPI runs it on its thread pool, and the lock lets one through.
    @app.post("/api/v1/image/generate")
    def generate(body: GenerateRequest) -> dict[str, Any]:
        with lock, torch.inference_mode():
            image = pipe(
                prompt=[body.prompt],
                width=body.width,
                height=body.height,
                num_inference_steps=body.steps,
                guidance_scale=body.cfg_scale,
                generator=[torch.Generator("cpu").manual_seed(body.seed)],
                output_type="pil",
            ).images[0]
        return {"images": [base64.b64encode(encode(image, "webp")).decode()]}

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description="naive one-request-at-a-time image server")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = create_app(args.model_dir)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
