"""`murano generate "a lighthouse at dusk"`: make images on a running murano server and write
them to files, printing each one's seed and the timings.

The server is `--url` (else MURANO_URL, else http://127.0.0.1:8000) and the key `--key` (else
MURANO_API_KEY; none is needed with `murano serve --no-auth`). The format follows the output
file's extension (.webp, .png, .jpg); with several variants the files are numbered
(out-1.webp, out-2.webp, ...). Errors are one line with the server's own message; the exit
status is 1 then.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

DEFAULT_URL = "http://127.0.0.1:8000"
_FORMATS = {".webp": "webp", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="make images on a running server and save them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("-m", "--model", help="model id (default: the server's default model)")
    parser.add_argument(
        "-o",
        "--output",
        type=_output_path,
        help="file to write, .webp/.png/.jpg (default: murano-SEED.webp here)",
    )
    parser.add_argument("--negative", metavar="TEXT", help="negative prompt")
    parser.add_argument("--seed", type=_int_in(1, 999_999_999), help="seed (default: random)")
    parser.add_argument("--variants", type=_int_in(1, 4), default=1, help="images, 1 to 4")
    parser.add_argument("--steps", type=_int_in(1, 1000), help="steps (default: the model's)")
    parser.add_argument("--cfg", type=float, help="cfg_scale (default: the model's)")
    sizing = parser.add_mutually_exclusive_group()
    sizing.add_argument("--size", type=_size, metavar="WxH", help="e.g. 1024x1024")
    sizing.add_argument(
        "--aspect-ratio", metavar="R", help="e.g. 16:9, for models sized by aspect ratio"
    )
    parser.add_argument("--resolution", metavar="TIER", help="1K, 2K or 4K, with --aspect-ratio")
    parser.add_argument("--style", metavar="NAME", help='a style preset, e.g. "3D Model"')
    parser.add_argument(
        "--no-safe-mode", action="store_true", help="do not blur adult content (safe_mode off)"
    )
    parser.add_argument("--url", help=f"the server (default: MURANO_URL or {DEFAULT_URL})")
    parser.add_argument("--key", help="API key (default: MURANO_API_KEY)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the images (900)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from murano.cli._client import ApiError, Client

    url = args.url or os.environ.get("MURANO_URL") or DEFAULT_URL
    key = args.key or os.environ.get("MURANO_API_KEY") or None
    try:
        with Client(url, key, timeout_s=args.timeout) as client:
            body = _request(args, args.model or client.default_model())
            result = _with_progress(lambda on_event: client.generate(body, on_event))
        _save(args.output, body["format"], result)
    except ApiError as exc:
        print(f"murano generate: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"murano generate: error: cannot write the image: {exc}", file=sys.stderr)
        return 1
    return 0


def _request(args: argparse.Namespace, model: str) -> dict[str, Any]:
    output: Path | None = args.output
    body: dict[str, Any] = {"model": model, "prompt": args.prompt}
    optional = {
        "negative_prompt": args.negative,
        "seed": args.seed,
        "steps": args.steps,
        "cfg_scale": args.cfg,
        "aspect_ratio": args.aspect_ratio,
        "resolution": args.resolution,
        "style_preset": args.style,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if args.size is not None:
        body["width"], body["height"] = args.size
    body["variants"] = args.variants
    body["format"] = "webp" if output is None else _FORMATS[output.suffix.lower()]
    body["safe_mode"] = not args.no_safe_mode
    return body


def _with_progress(call: Any) -> dict[str, Any]:
    """Run `call(on_event)` under a progress bar on stderr: indeterminate until the server
    reports steps (asynchronous jobs), and gone when the images are there."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from murano.cli._client import ServerEvent

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    console = Console(stderr=True)
    # Only on a terminal: piped or logged, stderr carries nothing but errors.
    progress = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task("Generating", total=None)

        def on_event(event: ServerEvent) -> None:
            data = event.data
            if event.event == "queued":
                position = data.get("queuePosition")
                text = "Queued" if position is None else f"Queued (position {position})"
                progress.update(task, description=text)
            elif event.event == "started":
                progress.update(task, description="Generating")
            elif event.event == "progress":
                steps, step = data.get("steps"), data.get("step")
                progress.update(task, total=steps, completed=step, description="Generating")

        result: dict[str, Any] = call(on_event)
        return result


def _save(output: Path | None, fmt: str, result: dict[str, Any]) -> None:
    data = result.get("request", {}).get("data", {})
    seed = data.get("seed")
    images: list[str] = result["images"]
    suffix = ".jpg" if fmt == "jpeg" else f".{fmt}"
    base = output or Path(f"murano-{seed if seed is not None else 'image'}{suffix}")
    base.parent.mkdir(parents=True, exist_ok=True)
    size = f"{data.get('width', '?')}x{data.get('height', '?')}"
    for i, image in enumerate(images):
        path = base if len(images) == 1 else base.with_name(f"{base.stem}-{i + 1}{base.suffix}")
        path.write_bytes(base64.b64decode(image))
        variant_seed = "?" if seed is None else seed + i
        print(f"{path}  seed {variant_seed}  {size}")
    print(_timings(result.get("timing") or {}))


def _timings(timing: dict[str, Any]) -> str:
    names = (
        ("total", "total"),
        ("inferenceDuration", "inference"),
        ("inferenceQueueTime", "queue"),
        ("inferencePreprocessingTime", "preprocessing"),
    )
    parts = [f"{label} {timing[key]:.0f} ms" for key, label in names if key in timing]
    return "timing: " + (", ".join(parts) or "not reported")


def _output_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in _FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r} needs an image extension: .webp, .png or .jpg (the format follows it)"
        )
    return path


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX×](\d+)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1024x1024")
    return int(match[1]), int(match[2])


def _int_in(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return value

    parse.__name__ = f"a whole number from {low} to {high}"
    return parse
