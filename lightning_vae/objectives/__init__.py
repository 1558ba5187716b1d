"""Training objectives, one file each, registered by the name a recipe's ``beta_schedule``
gives: ``constant``, ``linear`` and ``cyclical`` β (:mod:`.beta`), ``capacity``
(:mod:`.capacity`); and the importance-weighted bound (:mod:`.importance_weighted`)."""

from lightning_vae.objectives import beta, capacity  # noqa: F401  (registers the objectives)
from lightning_vae.objectives.base import (
    OBJECTIVES,
    Objective,
    build_objective,
    register_objective,
)
from lightning_vae.objectives.importance_weighted import importance_weighted_bound

__all__ = [
    "OBJECTIVES",
    "Objective",
    "build_objective",
    "importance_weighted_bound",
    "register_objective",
]
