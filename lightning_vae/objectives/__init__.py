"""Training objectives, one file each. A recipe's ``beta_schedule`` names the β-weighted ELBO's
schedule: ``constant``, ``linear`` and ``cyclical`` β (:mod:`.beta`), ``capacity``
(:mod:`.capacity`); its ``objective`` names what is optimised around that schedule (``elbo``,
the schedule's own, or ``iwae``, the importance-weighted autoencoder, :mod:`.iwae`). The
importance-weighted bound used for evaluation is in :mod:`.importance_weighted`."""

from lightning_vae.objectives import beta, capacity, iwae  # noqa: F401  (registers them)
from lightning_vae.objectives.base import (
    BETA_SCHEDULES,
    OBJECTIVES,
    Objective,
    build_objective,
    register_beta_schedule,
    register_objective,
)
from lightning_vae.objectives.importance_weighted import importance_weighted_bound

__all__ = [
    "BETA_SCHEDULES",
    "OBJECTIVES",
    "Objective",
    "build_objective",
    "importance_weighted_bound",
    "register_beta_schedule",
    "register_objective",
]
