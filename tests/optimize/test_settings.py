"""The `[models.optimize]` table of a models file: its shape, its shorthands, what it
refuses before anything loads, and what `/models` reports of it."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from murano.catalog.entries import build_entry
from murano.catalog.optimize import OptimizeSettings

ISSUE_EXAMPLE = """
[[models]]
id = "flux-dev"
source = "black-forest-labs/FLUX.1-dev"
[models.optimize]
attention = "native"
compile = { mode = "regional", dynamic = true }
cache = { type = "first-block", threshold = 0.08 }
quantize = { transformer = "float8wo" }
vae_tiling = true
warmup = [{ width = 1024, height = 1024, batch = 1 }]
"""


def entry_from(raw_optimize: dict[str, Any]) -> Any:
    return build_entry({"id": "m", "source": "/x", "optimize": raw_optimize}, family="flux")


def test_the_issue_example_parses_and_is_reported_as_written() -> None:
    raw = tomllib.loads(ISSUE_EXAMPLE)["models"][0]
    entry = build_entry(raw, family="flux")
    assert entry.optimize.report() == {
        "attention": "native",
        "compile": {"mode": "regional", "dynamic": True, "fullgraph": False},
        "cache": {
            "type": "first-block",
            "threshold": 0.08,
            "allow_request_off": False,
            "options": {},
        },
        "quantize": {"transformer": "float8wo"},
        "vae_tiling": True,
        "warmup": [{"width": 1024, "height": 1024, "batch": 1}],
    }


def test_no_table_means_no_settings() -> None:
    entry = build_entry({"id": "m", "source": "/x"}, family="sd")
    assert entry.optimize.empty and entry.optimize.report() == {}


@pytest.mark.parametrize(
    ("value", "mode"),
    [("regional", "regional"), ("full", "full"), (True, "regional"), ({"mode": "full"}, "full")],
)
def test_compile_shorthands(value: Any, mode: str) -> None:
    settings = OptimizeSettings.model_validate({"compile": value})
    assert settings.compile is not None and settings.compile.mode == mode
    assert settings.compile.dynamic is True


@pytest.mark.parametrize("value", ["off", False, {"mode": "off"}])
def test_compile_off(value: Any) -> None:
    assert OptimizeSettings.model_validate({"compile": value}).compile is None


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"cache": {"type": "taylorseer", "threshold": 0.1}}, "threshold"),
        ({"cache": {"type": "teacache"}}, "type"),
        ({"quantize": {"transformer": "int4"}}, "int4"),
        ({"compile": {"mode": "regional", "torch_mode": "fastest"}}, "torch_mode"),
        ({"warmup": [{"width": 1024}]}, "height"),
        ({"warmup": [{"width": 1024, "height": 1024, "batch": 0}]}, "batch"),
        ({"vae_tilling": True}, "vae_tilling"),
        ({"attention": "Flash Attention"}, "attention"),
    ],
)
def test_bad_settings_fail_the_models_file_naming_them(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(ValueError, match=names) as caught:
        entry_from(raw)
    assert "model entry 'm'" in str(caught.value)


def test_settings_objects_refuse_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        OptimizeSettings.model_validate({"cache": {"type": "first-block", "thresh": 0.1}})
