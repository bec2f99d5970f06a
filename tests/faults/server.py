"""A real murano server process for the fault tests: `murano serve`'s uvicorn and edge
limits, real accounts (SQLite or PostgreSQL, Redis) from the MURANO_* environment, and the
fake engine (`FakeBackend`, each batch taking FAULTS_BATCH_S seconds) instead of a model.

    python -m tests.faults.server
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from PIL.Image import Image

from murano.catalog.entries import ModelEntry
from murano.cli.serve import run_server
from murano.engine.backend import StepControl
from murano.engine.engine import Engine
from murano.engine.fake import FakeBackend
from murano.engine.params import GenerationParams
from murano.engine.scheduler import SchedulerConfig
from murano.settings import Settings
from tests.conftest import test_catalog


class SlowBackend(FakeBackend):
    def __init__(self, model_id: str, seconds: float) -> None:
        super().__init__(model_id)
        self.seconds = seconds

    def generate(
        self, batch: Sequence[GenerationParams], control: StepControl | None = None
    ) -> list[list[Image]]:
        time.sleep(self.seconds)
        return super().generate(batch, control)


def main() -> None:
    from murano.app import create_app

    settings = Settings()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    seconds = float(os.environ.get("FAULTS_BATCH_S", "0"))

    def factory(entry: ModelEntry) -> SlowBackend:
        return SlowBackend(entry.id, seconds)

    config = SchedulerConfig(
        max_batch_images=settings.max_batch_images, max_queue=settings.max_queue
    )
    engine = Engine(test_catalog(), factory, config=config)
    run_server(create_app(settings, engine=engine), settings)


if __name__ == "__main__":
    main()
