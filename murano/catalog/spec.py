"""Venice's `model_spec` for image models, with Venice's own field names (camelCase where
Venice uses it), so `/models` can return it as it is."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

__all__ = [
    "Constraints",
    "ModelSpec",
    "Price",
    "Pricing",
    "StepsConstraint",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StepsConstraint(_Spec):
    default: int = Field(ge=1)
    max: int = Field(ge=1)


class Constraints(_Spec):
    promptCharacterLimit: int = Field(default=1500, ge=1)
    steps: StepsConstraint = StepsConstraint(default=8, max=50)
    widthHeightDivisor: int = Field(default=8, ge=1)
    aspectRatios: list[str] | None = None
    defaultAspectRatio: str | None = None
    resolutions: list[str] | None = None
    defaultResolution: str | None = None
    # Edit (inpaint) models: whether several input images combine, and how many at most.
    combineImages: bool | None = None
    maxInputImages: int | None = Field(default=None, ge=1)


# Venice's schema has prices as JSON numbers; the exact Decimal stays for billing.
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class Price(_Spec):
    usd: Amount
    diem: Amount | None = None


class Pricing(_Spec):
    generation: Price | None = None
    resolutions: dict[str, Price] | None = None
    upscale: dict[str, Price] | None = None
    # Per edit (`/image/edit`, `/image/multi-edit`, `/images/edits`); else the generation price.
    inpaint: Price | None = None

    def unit_price(self, resolution: str | None, *, edit: bool = False) -> Decimal:
        """USD per image: the tier's price when the model is tiered by resolution (an
        upscale's tier is its factor, "2x" or "4x"); for an edit, the `inpaint` price when
        the model has one."""
        if self.upscale and resolution in self.upscale:
            return self.upscale[resolution].usd
        if edit and self.inpaint is not None:
            return self.inpaint.usd
        # Tiers match whatever their case: Venice prices Grok's "1k" under "1K".
        tiers = {tier.upper(): price for tier, price in (self.resolutions or {}).items()}
        if resolution is not None and resolution.upper() in tiers:
            return tiers[resolution.upper()].usd
        if self.generation is not None:
            return self.generation.usd
        if self.resolutions:
            return next(iter(self.resolutions.values())).usd
        return Decimal(0)


class ModelSpec(_Spec):
    name: str
    privacy: Literal["private", "anonymized"] = "private"
    offline: bool = False
    beta: bool = False
    betaModel: bool = False
    traits: list[str] = Field(default_factory=list)
    modelSource: str = ""
    constraints: Constraints = Constraints()
    pricing: Pricing = Pricing(generation=Price(usd=Decimal("0.01"), diem=Decimal("0.01")))
    supportsWebSearch: bool = False
    supportsOptimizePromptThinking: bool = False
    supportsStyleReferences: bool = False
    uncensored: bool | None = None
