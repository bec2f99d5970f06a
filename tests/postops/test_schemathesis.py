"""Venice's own OpenAPI spec of the two post-processing paths, fuzzed with schemathesis
against the app (JSON and multipart bodies generated from `UpscaleImageRequest` and
`BackgroundRemoveImageRequest`): whatever it sends, never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi

from murano.app import create_app
from tests.conftest import AUTH, make_settings
from tests.postops.conftest import Parts, postop_engine

SPEC_NAME = "venice-openapi-image-edit.yaml"


def _spec() -> Path | None:
    """The reference spec in `shared/reference/`, beside the repository (or above it)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "reference" / SPEC_NAME
        if candidate.is_file():
            return candidate
    return None


SPEC = _spec()
if SPEC is None:
    pytest.skip(
        f"shared/reference/{SPEC_NAME} is not beside the repository", allow_module_level=True
    )

schema = schemathesis.openapi.from_path(SPEC).include(
    path_regex=r"^/image/(upscale|background-remove)$"
)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[asgi.ASGIClient]:
    data = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(data, watermark=False), engine=postop_engine(Parts()))
    with asgi.get_client(app) as client:  # one lifespan for the whole run
        yield client


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case, session: asgi.ASGIClient) -> None:
    response = case.call(session=session, headers=AUTH, base_url="http://localhost/api/v1")
    assert response.status_code < 500, (case.media_type, case.body, response.text)
