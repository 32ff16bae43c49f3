"""The decide stage: answer automatically, or escalate a decision to a person."""

from __future__ import annotations

from prodgate.runtime.base import Prediction

AUTO, ESCALATED, REJECTED = "auto", "escalated", "rejected"


def decide(prediction: Prediction, confidence_below: float | None) -> str:
    """``escalated`` when the model is less confident than the service allows, else ``auto``."""
    confidence = prediction.confidence
    if confidence_below is not None and confidence is not None and confidence < confidence_below:
        return ESCALATED
    return AUTO
