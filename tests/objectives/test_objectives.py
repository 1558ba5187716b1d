import re

import numpy as np
import pytest
import torch

from lightning_vae.objectives import (
    BETA_SCHEDULES,
    OBJECTIVES,
    Objective,
    build_objective,
    register_beta_schedule,
    register_objective,
)
from lightning_vae.objectives.beta import BetaELBO, CyclicalAnnealing, LinearWarmup
from lightning_vae.objectives.capacity import CapacityObjective


def test_linear_warmup_reaches_beta_after_its_steps():
    schedule = LinearWarmup(beta=2.0, steps=100)
    assert [schedule.beta(s) for s in (0, 50, 100, 1000)] == [0.0, 1.0, 2.0, 2.0]


def test_cyclical_annealing_restarts_each_cycle_and_holds_after_the_last():
    schedule = CyclicalAnnealing(beta=1.0, cycle_steps=100, ratio=0.5, cycles=2)
    assert [schedule.beta(s) for s in (0, 25, 50, 99, 100, 125, 200, 210)] == [
        0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]


def test_capacity_objective_penalises_distance_to_the_growing_capacity():
    objective = CapacityObjective(beta=10.0, capacity_max=20.0, steps=100)
    weights = objective.weights(50)
    assert weights == {"beta": 10.0, "capacity": 10.0}
    loss = objective.loss({"recon": torch.tensor(50.0), "kl": torch.tensor(4.0)}, **weights)
    assert loss.item() == pytest.approx(50.0 + 10.0 * abs(4.0 - 10.0))


@pytest.mark.parametrize("schedule", [
    LinearWarmup(beta=2.0, steps=100),
    CapacityObjective(beta=10.0, capacity_max=20.0, steps=100),
])
def test_the_loss_takes_its_weights_as_numbers_or_as_device_tensors(schedule):
    """A training pass replayed as a CUDA graph reads the weights from tensors."""
    means = {"recon": torch.tensor(50.0), "kl": torch.tensor(4.0)}
    weights = schedule.weights(30)
    as_tensors = {name: torch.tensor(value) for name, value in weights.items()}
    expected = schedule.loss(means, **weights)
    assert schedule.loss(means, **as_tensors).item() == pytest.approx(expected.item())
    assert expected.item() != pytest.approx(schedule.loss(means, **schedule.weights(60)).item())


def test_build_objective_from_name_and_dict():
    assert build_objective(4.0, "constant").beta(123) == 4.0
    assert build_objective(1.0, {"name": "linear", "steps": 10}).beta(5) == 0.5


@pytest.mark.parametrize("name, cls", [
    ("constant", BetaELBO), ("linear", LinearWarmup), ("cyclical", CyclicalAnnealing),
    ("capacity", CapacityObjective)])
def test_each_beta_schedule_name_builds_its_objective(name, cls):
    options = {"constant": {}, "linear": {"steps": 10}, "cyclical": {"cycle_steps": 10},
               "capacity": {"capacity_max": 5.0, "steps": 10}}[name]
    objective = build_objective(2.0, {"name": name, **options})
    assert type(objective) is cls
    assert BETA_SCHEDULES[name] is cls


def test_a_registered_beta_schedule_is_built_from_its_name_with_beta_and_options(monkeypatch):
    monkeypatch.setitem(BETA_SCHEDULES, "test-free-bits", None)  # removed again after the test

    @register_beta_schedule("test-free-bits")
    class FreeBits(Objective):
        def __init__(self, beta: float, floor: float) -> None:
            self.beta, self.floor = beta, floor

        def weights(self, step: int) -> dict[str, float]:
            return {"beta": self.beta}

        def loss(self, means, beta):
            return means["recon"] + beta * means["kl"].clamp(min=self.floor)

    objective = build_objective(2.0, {"name": "test-free-bits", "floor": 3.0})
    assert isinstance(objective, FreeBits) and objective.floor == 3.0
    loss = objective.loss({"recon": torch.tensor(10.0), "kl": torch.tensor(1.0)},
                          **objective.weights(0))
    assert loss.item() == 16.0


@pytest.mark.parametrize("spec, message", [
    ("cosine", "unknown beta_schedule"),
    ({"name": "linear", "step": 10}, "bad options"),
    ({"name": "linear", "steps": 0}, "steps >= 1"),
    (None, "beta_schedule must be a name or a dict with a name, got None"),
    ({"name": ["linear"]}, r"unknown beta_schedule \['linear'\]"),
])
def test_bad_schedules_raise_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        build_objective(1.0, spec)


@pytest.mark.parametrize("beta", [None, "1", -0.5, float("nan"), float("inf"), True])
def test_a_beta_that_is_no_number_at_least_zero_is_refused_naming_it(beta):
    with pytest.raises(ValueError, match=re.escape(f"beta must be a number >= 0 (1: the plain "
                                                   f"VAE), got {beta!r}")):
        build_objective(beta, {"name": "linear", "steps": 10})


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("spec, option", [
    *(({"name": "linear", "steps": steps}, "steps") for steps in (0, 0.5, "10", True, INF)),
    *(({"name": "cyclical", "cycle_steps": steps}, "cycle_steps") for steps in (0, NAN, None)),
    *(({"name": "cyclical", "cycle_steps": 10, "ratio": ratio}, "ratio")
      for ratio in (0, 1.5, NAN, "0.5", True)),
    *(({"name": "cyclical", "cycle_steps": 10, "cycles": cycles}, "cycles")
      for cycles in (0, -1, 2.0, "2", True)),
    *(({"name": "capacity", "capacity_max": capacity, "steps": 10}, "capacity_max")
      for capacity in (NAN, INF, -1.0, "25", None)),
    *(({"name": "capacity", "capacity_max": 25.0, "steps": steps}, "steps")
      for steps in (0, -10.0, "10")),
])
def test_a_schedule_option_of_the_wrong_type_or_range_is_refused_naming_it(spec, option):
    """A NaN capacity would make the loss NaN; cycles=0 would hold β constant from step 0."""
    with pytest.raises(ValueError, match=re.escape(f"beta_schedule {spec['name']!r} needs "
                                                   f"{option} ") + ".*"
                       + re.escape(f"got {option}={spec[option]!r}")):
        build_objective(1.0, spec)


def test_cycles_may_be_left_out_to_cycle_until_training_ends():
    schedule = build_objective(1.0, {"name": "cyclical", "cycle_steps": 10, "cycles": None})
    assert [schedule.beta(s) for s in (0, 5, 1000, 1005)] == [0.0, 1.0, 0.0, 1.0]


def test_beta_may_be_any_real_number_at_least_zero():
    assert build_objective(np.float32(4), "constant").beta(0) == 4.0
    assert build_objective(0, "constant").beta(0) == 0.0


def test_a_schedule_length_given_as_a_float_works_as_earlier_versions_saved_it():
    """1e3 from a command line or a config.json written before the checks: a number of steps."""
    assert build_objective(2.0, {"name": "linear", "steps": 1e3}).beta(500) == 1.0
    assert build_objective(1.0, {"name": "cyclical", "cycle_steps": 100.0}).beta(150) == 1.0


def test_a_registered_objective_wraps_the_beta_schedule_and_elbo_is_the_schedule_itself(
        monkeypatch):
    schedule = build_objective(2.0, {"name": "linear", "steps": 10})
    assert type(build_objective(2.0, {"name": "linear", "steps": 10}, "elbo")) is type(schedule)
    monkeypatch.setitem(OBJECTIVES, "test-doubled", None)

    @register_objective("test-doubled")
    class Doubled(Objective):
        def __init__(self, schedule: Objective, factor: float) -> None:
            self.schedule, self.factor = schedule, factor

        def weights(self, step: int) -> dict[str, float]:
            return self.schedule.weights(step)

        def loss(self, means, beta):
            return self.factor * self.schedule.loss(means, beta)

    objective = build_objective(2.0, {"name": "linear", "steps": 10},
                                {"name": "test-doubled", "factor": 3.0})
    means = {"recon": torch.tensor(10.0), "kl": torch.tensor(1.0)}
    assert objective.weights(5) == {"beta": 1.0}
    assert objective.loss(means, **objective.weights(5)).item() == 33.0
    with pytest.raises(ValueError, match="unknown objective 'nope'; choose one of"):
        build_objective(1.0, "constant", "nope")
    with pytest.raises(ValueError, match=r"bad options .* for objective 'test-doubled'"):
        build_objective(1.0, "constant", {"name": "test-doubled", "fator": 3.0})
