"""MIG, the FactorVAE score, DCI disentanglement and SAP on representations whose answers are
known: the factors themselves, noise, a rotation of the factors, a duplicated code; the same
value whatever the batches, their order or the number of processes."""

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_vae import DCIDisentanglement, FactorVAEScore, MutualInformationGap, SAPScore
from lightning_vae.metrics.disentanglement import (
    dci_disentanglement,
    discretize,
    lasso_importance,
    mutual_information_gap,
)

SIZES = (10, 12, 15, 20)
"""Factors of at most 20 values: the 20 bins of MIG and SAP tell all of them apart."""
COUNT = 3000
METRICS = {"mig": MutualInformationGap, "factorvae": FactorVAEScore, "dci": DCIDisentanglement,
           "sap": SAPScore}


def factors(count: int = COUNT, sizes: tuple[int, ...] = SIZES, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(size, (count,), generator=generator) for size in sizes], 1)


FACTORS = factors()
IDENTITY = FACTORS.double()
RANDOM = torch.randn(COUNT, len(SIZES), generator=torch.Generator().manual_seed(1))


def rotated(codes: torch.Tensor) -> torch.Tensor:
    """The standardized codes turned by a fixed random rotation: every code mixes every factor."""
    rotation, _ = torch.linalg.qr(torch.randn(codes.shape[1], codes.shape[1],
                                              generator=torch.Generator().manual_seed(2),
                                              dtype=codes.dtype))
    return ((codes - codes.mean(0)) / codes.std(0)) @ rotation


def score(name: str, codes: torch.Tensor, labels: torch.Tensor = FACTORS) -> float:
    metric = METRICS[name]()
    metric.update(codes, labels)
    return metric.compute().item()


def test_the_factors_themselves_score_near_one_and_factorvae_exactly_one():
    assert score("mig", IDENTITY) > 0.95
    assert score("dci", IDENTITY) == pytest.approx(1.0, abs=1e-6)
    assert score("factorvae", IDENTITY) == 1.0
    # SAP's second-best code for a factor predicts it at chance, the most frequent class's
    # share (about 1/size): the identity scores 1 minus that, averaged.
    chance = np.mean([1 / size for size in SIZES])
    assert score("sap", IDENTITY) == pytest.approx(1 - chance, abs=0.03)
    assert score("sap", IDENTITY) > 0.85


def test_noise_scores_near_zero_and_factorvae_near_chance():
    assert score("mig", RANDOM) < 0.02
    assert score("sap", RANDOM) < 0.03
    assert score("dci", RANDOM) == 0.0  # the Lasso gives noise no importance at all
    assert score("factorvae", RANDOM) < 1 / len(SIZES) + 0.15


def test_a_rotation_of_the_factors_is_less_disentangled_than_the_factors():
    assert score("dci", rotated(IDENTITY)) < score("dci", IDENTITY) - 0.5
    assert score("mig", rotated(IDENTITY)) < score("mig", IDENTITY) - 0.5


def test_a_duplicated_code_lowers_mig_since_two_codes_share_the_factor():
    duplicated = torch.cat([IDENTITY, IDENTITY[:, :1]], 1)
    assert score("mig", duplicated) < score("mig", IDENTITY) - 0.2
    # The duplicate carries all of the first factor: that factor's gap is 0, the others' stay.
    assert score("mig", duplicated) == pytest.approx(score("mig", IDENTITY) * 3 / 4, abs=0.01)


def test_mig_matches_its_definition_on_a_small_case():
    """Two binary factors; code 0 is factor 0, code 1 is factor 0 half the time: the gap for
    factor 0 is (log 2 − I(code 1; factor 0)) / log 2, for factor 1 zero."""
    f0 = np.tile([0, 1], 8)
    f1 = np.repeat([0, 1], 8)
    code1 = np.where(np.arange(16) % 4 < 2, f0, 1 - f0)  # independent of f0
    codes = np.stack([f0, code1], 1).astype(float)
    assert mutual_information_gap(codes, np.stack([f0, f1], 1)) == pytest.approx(0.5)


def test_codes_are_cut_into_twenty_equal_bins_over_their_range():
    binned = discretize(np.linspace(0, 1, 41)[:, None])
    assert binned.min() == 1 and binned.max() == 20
    np.testing.assert_array_equal(np.bincount(binned[:, 0])[1:], [2] * 19 + [3])


def test_dci_is_one_for_a_diagonal_importance_and_zero_for_a_uniform_one():
    assert dci_disentanglement(np.eye(4)) == pytest.approx(1.0)
    assert dci_disentanglement(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-9)
    importance = lasso_importance(IDENTITY.numpy(), FACTORS.numpy())
    assert np.count_nonzero(importance - np.diag(np.diag(importance))) == 0


@pytest.mark.parametrize("name", METRICS)
def test_the_score_does_not_depend_on_batches_or_their_order(name):
    codes = IDENTITY + 0.5 * RANDOM  # noisy, so every score is away from its bounds
    metric = METRICS[name]()
    order = torch.randperm(COUNT, generator=torch.Generator().manual_seed(3))
    for rows in order.split(700):
        metric.update(codes[rows], FACTORS[rows])
    assert metric.compute().item() == pytest.approx(score(name, codes), rel=1e-9)


@pytest.mark.parametrize(("codes", "labels", "error", "message"), [
    (torch.zeros(4, 3), torch.zeros(5, 2, dtype=torch.long), ValueError,
     r"takes codes \(B, D\) and factors \(B, K\) of the same examples, got \(4, 3\) and \(5, 2\)"),
    (torch.zeros(4, 3), torch.zeros(4, 2), TypeError, "factor classes as integers"),
])
def test_bad_updates_are_refused_by_name(codes, labels, error, message):
    with pytest.raises(error, match=message):
        MutualInformationGap().update(codes, labels)


def test_mig_and_sap_need_two_codes_and_mig_a_varying_factor():
    for metric in (MutualInformationGap(), SAPScore()):
        metric.update(IDENTITY[:, :1], FACTORS)
        with pytest.raises(ValueError, match="needs codes of at least 2 dimensions, got 1"):
            metric.compute()
    constant = FACTORS.clone()
    constant[:, 2] = 4
    with pytest.raises(ValueError, match="factor column 2 takes one value over the 3000"):
        score("mig", IDENTITY, constant)


# --- two processes (gloo, CPU) give the one-process scores --------------------------------


def _rank_scores(rank: int, port: int, out: str) -> None:
    """Each rank updates with its own, uneven share of the examples; rank 0 saves the scores."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        codes = IDENTITY + 0.5 * RANDOM
        rows = torch.arange(COUNT)[: COUNT // 3] if rank == 0 else torch.arange(COUNT)[COUNT // 3:]
        scores = {}
        for name, kind in METRICS.items():
            metric = kind()
            metric.update(codes[rows], FACTORS[rows])
            scores[name] = metric.compute().item()
        if rank == 0:
            torch.save(scores, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # about 7 s on 2 busy cores: spawning two processes costs most of it
def test_two_processes_give_the_one_process_scores(tmp_path: Path):
    out = tmp_path / "scores.pt"
    mp.spawn(_rank_scores, args=(_free_port(), str(out)), nprocs=2)
    two = torch.load(out)
    codes = IDENTITY + 0.5 * RANDOM
    for name in METRICS:
        assert two[name] == pytest.approx(score(name, codes), rel=1e-9), name
