"""`SafetyPolicy`: whether a job's images are classified for `safe_mode`, decided once per
job, when the job is made, and followed by everyone after:

    SafetyPolicy(classifier).decide(entry, safe_mode) → SafetyDecision
        .classifier  what runs on the job's images (the engine's post-processing, or the
                     gateway's for an upstream model); None: nothing classifies them here
        .checked     False when safe mode was asked for and nothing looked at the images:
                     the response says `x-murano-safety-checked: false`

The rules: safe mode off → nothing classifies, and that is as asked (checked). A local
model → the server's classifier, when it has one. An upstream model → the server's
classifier only where its entry turns `safety_check` on; a Venice upstream honours
`safe_mode` itself (checked either way), an OpenAI one has no blur of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from murano.engine.job import Inspector

if TYPE_CHECKING:
    from murano.catalog.entries import ModelEntry

__all__ = ["NOT_ASKED", "SafetyDecision", "SafetyPolicy"]


@dataclass(frozen=True, slots=True)
class SafetyDecision:
    """One job's safe mode: see the module docstring."""

    classifier: Inspector | None = None
    checked: bool = True


# Safe mode off, or a request it does not apply to (upscale, background removal).
NOT_ASKED = SafetyDecision()


class SafetyPolicy:
    """The server's classifier (None without one) and the rules for using it."""

    def __init__(self, classifier: Inspector | None) -> None:
        self.classifier = classifier

    def decide(self, entry: ModelEntry, safe_mode: bool) -> SafetyDecision:
        if not safe_mode:
            return NOT_ASKED
        upstream = entry.upstream
        if upstream is None:
            return SafetyDecision(self.classifier, checked=self.classifier is not None)
        classifier = self.classifier if upstream.safety_check else None
        return SafetyDecision(
            classifier, checked=classifier is not None or upstream.kind == "venice"
        )
