"""The upstream gateway: models without open weights, served by calling an API that has
them (Venice, another murano, or any OpenAI Images API) with the operator's key, behind
murano's own keys, limits and billing. Knows nothing of FastAPI."""

from murano.gateway.clients import UpstreamImages
from murano.gateway.gateway import Delivery, Gateway
from murano.gateway.translate import UpstreamRequest, ratio_for_size

__all__ = [
    "Delivery",
    "Gateway",
    "UpstreamImages",
    "UpstreamRequest",
    "ratio_for_size",
]
