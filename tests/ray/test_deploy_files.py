"""deploy/ray: the Serve config file and the KubeRay RayService manifest are valid Serve
configs whose application murano can import."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy" / "ray"

pytest.importorskip("ray.serve")
# Serve's schema still uses pydantic v1-style calls.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _configs() -> list[dict[str, Any]]:
    serve_config = yaml.safe_load((DEPLOY / "serve-config.yaml").read_text())
    service = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    return [serve_config, yaml.safe_load(service["spec"]["serveConfigV2"])]


@pytest.mark.parametrize("index", [0, 1], ids=["serve-config", "rayservice"])
def test_deploy_files_are_serve_configs_of_murano(index: int) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = _configs()[index]
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    module, _, name = app.import_path.partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    assert app.route_prefix == "/"
