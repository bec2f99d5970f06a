"""The peer murano's throughput is measured against: the same pipeline served by LitServe
(Lightning-AI/LitServe), a generic batching framework, written as its documentation shows.
LitServe's own batch collector (up to `--max-batch` requests, waiting at most
`--batch-timeout-ms` for more), one pipeline call per batch on its inference worker process,
then each image encoded (the same `murano.imaging.encode` murano uses, so the same JPEG
settings) and answered as JSON with base64 images, like murano's answer. Nothing is
watermarked and no metadata is embedded: murano does both by default.

Requests use murano's body (`prompt`, `width`, `height`, `steps`, `cfg_scale`, `seed`,
`format`; other fields are ignored); the jobs of one batch must agree on size, steps and cfg
(the benchmark sends them so). `/readyz` is LitServe's health check.

LitServe is an optional dependency (`pip install 'murano-server[bench]'`, or
`litserve>=0.2.19,<0.3` into any environment that can import murano):

    .venv/bin/python benchmarks/litserve_server.py --model-dir DIR --port PORT
"""

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

import litserve as ls
import torch
from naive_server import GenerateRequest

from murano.imaging.encode import ImageFormat, encode

__all__ = ["DiffusionAPI", "main"]


class DiffusionAPI(ls.LitAPI):  # type: ignore[misc]
    """setup → decode → batch → predict → unbatch → encode, as LitServe runs an API."""

    def __init__(self, model_dir: Path, device: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_dir, self.pipe_device = model_dir, device

    def setup(self, device: str) -> None:
        from _models import load_pipeline

        self.pipe = load_pipeline(self.model_dir, self.pipe_device)

    def decode_request(self, request: GenerateRequest, **kwargs: Any) -> GenerateRequest:
        return request

    def batch(self, inputs: list[GenerateRequest]) -> list[GenerateRequest]:
        return inputs

    def predict(self, batch: list[GenerateRequest], **kwargs: Any) -> list[tuple[Any, ImageFormat]]:
        head = batch[0]
        with torch.inference_mode():
            output = self.pipe(
                prompt=[body.prompt for body in batch],
                width=head.width,
                height=head.height,
                num_inference_steps=head.steps,
                guidance_scale=head.cfg_scale,
                generator=[torch.Generator("cpu").manual_seed(body.seed) for body in batch],
                output_type="pil",
            )
        return list(zip(output.images, [body.format for body in batch], strict=True))

    def unbatch(self, output: list[tuple[Any, ImageFormat]]) -> list[tuple[Any, ImageFormat]]:
        return output

    def encode_response(self, output: tuple[Any, ImageFormat], **kwargs: Any) -> dict[str, Any]:
        image, fmt = output
        return {"images": [base64.b64encode(encode(image, fmt)).decode()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LitServe around the same pipeline")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-timeout-ms", type=float, default=10.0)
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (bfloat16)")
    args = parser.parse_args(argv)
    api = DiffusionAPI(
        args.model_dir,
        args.device,
        max_batch_size=args.max_batch,
        batch_timeout=args.batch_timeout_ms / 1000,
        api_path="/api/v1/image/generate",
    )
    accelerator = "cuda" if args.device.startswith("cuda") else "cpu"
    server = ls.LitServer(
        api, accelerator=accelerator, workers_per_device=1, healthcheck_path="/readyz",
        timeout=900,
    )  # fmt: skip
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
