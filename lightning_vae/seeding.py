"""Seeds: the fixed ones that must not follow a run's ``seed``, and :func:`noise_seed`, which
mixes a run's seed with a position (epoch, rank, step, ...) into a fresh one.

Shared by the data modules (split, binarization, batch noise) and the model (its ε noise), so it
sits below both."""

import hashlib

SPLIT_SEED = 0
"""Seed of every train / validation split, whatever a run's ``seed`` is: every run validates on
the same images, so validation numbers are comparable across seeds."""

BINARIZATION_SEED = 0
"""Seed of the one fixed Bernoulli draw of binarized data (static binarization, and evaluation
under dynamic binarization); a second split's fixed draw uses ``BINARIZATION_SEED + 1``."""


def noise_seed(*keys: int) -> int:
    """A 63-bit seed mixing integers such as (seed, epoch, rank), so nearby tuples give unrelated
    streams: 63 bits of a BLAKE2b hash of the tuple. It runs at every training step (the model's
    noise): 2 µs alone, 16–22 µs within a step, against 14 and ~100 µs for NumPy's
    SeedSequence (docs/results.md, "Host time per step")."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
