"""Controlled capacity increase (Burgess et al. 2018): loss = recon + γ·|KL − C(t)|."""

from torch import Tensor

from lightning_vae.checks import is_real
from lightning_vae.objectives.base import (
    Objective,
    check_beta,
    check_option,
    check_steps,
    register_beta_schedule,
)


@register_beta_schedule("capacity")
class CapacityObjective(Objective):
    """The target capacity C(t) grows linearly from 0 to ``capacity_max`` nats over ``steps``
    optimizer steps; γ is the recipe's ``beta``."""

    def __init__(self, beta: float, capacity_max: float, steps: int) -> None:
        self.gamma = check_beta(beta)
        check_option("capacity", "capacity_max", capacity_max,
                     is_real(capacity_max) and capacity_max >= 0, ">= 0 (a finite number of nats)")
        check_steps("capacity", "steps", steps)
        self.capacity_max, self.steps = capacity_max, steps

    def capacity(self, step: int) -> float:
        return self.capacity_max * min(1.0, step / self.steps)

    def weights(self, step: int) -> dict[str, float]:
        return {"beta": self.gamma, "capacity": self.capacity(step)}

    def loss(self, means: dict[str, Tensor], beta: Tensor | float,
             capacity: Tensor | float) -> Tensor:
        return means["recon"] + beta * (means["kl"] - capacity).abs()
