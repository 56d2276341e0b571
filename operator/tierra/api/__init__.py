"""Typed models of the tierra.dev/v1alpha1 API; the CRDs in ``crds/`` are generated from them."""

from tierra.api.common import GROUP, VERSION, AcceleratorType, Condition, Level, Objective
from tierra.api.inference_service import InferenceService, InferenceServiceSpec
from tierra.api.tier import Tier, TierSpec

__all__ = [
    "GROUP",
    "VERSION",
    "AcceleratorType",
    "Condition",
    "InferenceService",
    "InferenceServiceSpec",
    "Level",
    "Objective",
    "Tier",
    "TierSpec",
]
