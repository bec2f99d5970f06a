"""Pure functions on PIL images and encoded bytes — no torch, no HTTP — that the server runs
on its post-processing threads for every image:

* `encode`      — WebP / PNG / JPEG bytes at the shipped settings, format sniffing
* `metadata`    — the A1111 "infotext" for `embed_exif_metadata`, written and read back
* `watermark`   — the invisible DWT-DCT-SVD mark (`has_watermark`) and an optional visible one
* `blur`        — the `safe_mode` blur and the measure of how little detail it leaves
* `placeholder` — blacked-out images and the PNG placeholder for content violations
* `samples`     — synthetic photo-like and noise images for tests and benchmarks
"""

__all__: list[str] = []
