"""The β-weighted negative ELBO, loss = recon + β(step)·KL, with β constant (β = 1 is the VAE of
Kingma & Welling 2014; β > 1 the β-VAE of Higgins et al. 2017), warmed up linearly, or annealed
in cycles."""

from torch import Tensor

from lightning_vae.checks import is_int, is_real
from lightning_vae.objectives.base import (
    Objective,
    check_beta,
    check_option,
    check_steps,
    register_beta_schedule,
)


@register_beta_schedule("constant")
class BetaELBO(Objective):
    """loss = recon + β·KL with a fixed β; the schedules below vary β with the step."""

    def __init__(self, beta: float) -> None:
        self.beta_max = check_beta(beta)

    def beta(self, step: int) -> float:
        return self.beta_max

    def weights(self, step: int) -> dict[str, float]:
        return {"beta": self.beta(step)}

    def loss(self, means: dict[str, Tensor], beta: Tensor | float) -> Tensor:
        return means["recon"] + beta * means["kl"]


@register_beta_schedule("linear")
class LinearWarmup(BetaELBO):
    """KL warm-up: β grows linearly from 0 to its final value over ``steps`` optimizer steps
    (Bowman et al. 2016; Sønderby et al. 2016)."""

    def __init__(self, beta: float, steps: int) -> None:
        super().__init__(beta)
        check_steps("linear", "steps", steps)
        self.steps = steps

    def beta(self, step: int) -> float:
        return self.beta_max * min(1.0, step / self.steps)


@register_beta_schedule("cyclical")
class CyclicalAnnealing(BetaELBO):
    """Cyclical annealing (Fu et al. 2019): training is cut into cycles of ``cycle_steps``; in each,
    β rises linearly from 0 to its final value over the first ``ratio`` of the cycle and is then
    held. After ``cycles`` cycles (if given) β stays at its final value."""

    def __init__(self, beta: float, cycle_steps: int, ratio: float = 0.5,
                 cycles: int | None = None) -> None:
        super().__init__(beta)
        check_steps("cyclical", "cycle_steps", cycle_steps)
        check_option("cyclical", "ratio", ratio, is_real(ratio) and 0 < ratio <= 1,
                     "in (0, 1] (a number)")
        check_option("cyclical", "cycles", cycles,
                     cycles is None or (is_int(cycles) and cycles >= 1),
                     ">= 1 (an int), or null to cycle until training ends")
        self.cycle_steps, self.ratio, self.cycles = cycle_steps, ratio, cycles

    def beta(self, step: int) -> float:
        if self.cycles is not None and step >= self.cycles * self.cycle_steps:
            return self.beta_max
        position = (step % self.cycle_steps) / self.cycle_steps
        return self.beta_max * min(1.0, position / self.ratio)
