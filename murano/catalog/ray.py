"""A model entry's `[models.ray]` table: how `murano serve --ray` sizes the model's Ray Serve
deployment. Read only in Ray mode; a server without `--ray` ignores it.

[models.ray]
num_gpus = 0.5            # per replica; fractions share a GPU (default: 1 on a cluster
                          # with GPUs unless the model's device is "cpu", else 0)
num_cpus = 1              # per replica (default 1; 0.5 for upscalers and background removers)
num_replicas = 2          # a fixed number of replicas (default 1) ...
[models.ray.autoscaling]  # ... or let Serve scale between min and max replicas
min_replicas = 1
max_replicas = 4
target_ongoing_requests = 8   # requests per replica Serve aims for
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["RayAutoscaling", "RayOptions"]


class RayAutoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RayAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"ray.autoscaling: min_replicas ({self.min_replicas}) is above "
                f"max_replicas ({self.max_replicas})"
            )
        return self


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_gpus: float | None = Field(default=None, ge=0)
    num_cpus: float | None = Field(default=None, ge=0)
    num_replicas: int | None = Field(default=None, ge=1)
    autoscaling: RayAutoscaling | None = None

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> RayOptions:
        if self.num_replicas is not None and self.autoscaling is not None:
            raise ValueError("ray: give either num_replicas or an [autoscaling] table, not both")
        return self
