"""A tiny random-weight background-removal model: an ONNX graph with the interface of
BiRefNet / RMBG-1.4 exports (input `pixel_values` 1×3×S×S, output one 1×1×S×S alpha map),
two 3×3 convolutions and a sigmoid, with a transformers-style `preprocessor_config.json`
beside it. Built with `onnx.helper` from seeded numpy weights, so a build is
byte-for-byte reproducible; ONNX Runtime loads it exactly as it loads a real export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TINY_SEGMENTER_SIZE", "build_segmenter", "save_segmenter"]

TINY_SEGMENTER_SIZE = 64


def build_segmenter(out_dir: Path, *, seed: int = 0, size: int = TINY_SEGMENTER_SIZE) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden = 4
    weights = {
        "w1": rng.normal(0, 1 / np.sqrt(27), (hidden, 3, 3, 3)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.normal(0, 1 / np.sqrt(hidden * 9), (1, hidden, 3, 3)).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    nodes = [
        ("Conv", ["pixel_values", "w1", "b1"], ["h1"]),
        ("Relu", ["h1"], ["h2"]),
        ("Conv", ["h2", "w2", "b2"], ["logits"]),
        ("Sigmoid", ["logits"], ["alphas"]),
    ]
    return save_segmenter(out_dir, nodes, weights, size=size, mean=0.5, std=1.0)


def save_segmenter(
    out_dir: Path,
    nodes: list[tuple[str, list[str], list[str]]],
    weights: Mapping[str, Any],
    *,
    size: int,
    mean: float,
    std: float,
) -> Path:
    """`out_dir/model.onnx` from (op, inputs, outputs) nodes over `pixel_values` ending in
    `alphas`, with `weights` as initializers (3×3 convolutions padded to keep the size),
    and `out_dir/preprocessor_config.json`. Tests build hand-made segmenters with it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph_nodes = []
    for op, inputs, outputs in nodes:
        node = helper.make_node(op, inputs, outputs)
        if op == "Conv":  # 3×3 kernels that keep the size
            node.attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
        graph_nodes.append(node)
    initializers = [
        numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)
        for name, value in weights.items()
    ]
    graph = helper.make_graph(
        graph_nodes,
        "murano-tiny-segmenter",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("alphas", TensorProto.FLOAT, [1, 1, size, size])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="murano"
    )
    model.ir_version = 8  # readable by every ONNX Runtime since 1.10
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_dir / "model.onnx"))
    preprocessor = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [mean] * 3,
        "image_std": [std] * 3,
        "rescale_factor": 1 / 255,
        "size": {"height": size, "width": size},
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    return out_dir
