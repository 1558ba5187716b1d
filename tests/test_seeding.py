"""noise_seed: reproducible, and unrelated streams for neighbouring keys."""

import itertools

from lightning_vae.seeding import noise_seed


def test_noise_seeds_are_63_bit_reproducible_and_unrelated_for_neighbouring_keys() -> None:
    neighbours = [(0, 0, 0, step, batch) for step in range(100) for batch in range(10)]
    seeds = [noise_seed(*keys) for keys in neighbours]
    assert seeds == [noise_seed(*keys) for keys in neighbours]
    assert len(set(seeds)) == len(seeds) and all(0 <= seed < 2**63 for seed in seeds)
    # Unrelated, not merely distinct: the bits of neighbours' seeds agree half the time.
    agreeing = [64 - bin(a ^ b).count("1") for a, b in itertools.pairwise(seeds)]
    assert 28 < sum(agreeing) / len(agreeing) < 36
    assert noise_seed(1, 23) != noise_seed(12, 3) != noise_seed(2**70, 1)
