"""Schemathesis over Venice's own OpenAPI spec for `/image/edit` and `/image/multi-edit`
(`venice-openapi-image-edit.yaml`, a copy of `shared/reference/`): requests generated from
the spec's schemas, JSON and multipart, never get a 5xx from the app on the fake engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from murano.app import create_app
from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings

pytestmark = pytest.mark.slow

SPEC = Path(__file__).with_name("venice-openapi-image-edit.yaml")
schema = schemathesis.openapi.from_path(SPEC).include(
    path_regex=r"^/image/(edit|multi-edit)$", method="POST"
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    return create_app(make_settings(tmp), engine=fake_engine(FakeEngineParts()))


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_from_the_spec_gets_a_5xx(app: FastAPI, case: schemathesis.Case) -> None:
    response = case.call(app=app, base_url="http://testserver/api/v1", headers=AUTH)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)
