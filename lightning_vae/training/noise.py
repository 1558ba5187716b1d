"""The training module's random draws (ε of the reparameterization, the importance samples):
one generator on the model's device, seeded from (run seed, rank, stream, position) before each
batch, so every DDP rank draws its own noise, and a resumed run, whose step counter is restored,
draws the noise of an uninterrupted one (Lightning checkpoints no generator state). Validation
noise depends on the batch position only: the same weights give the same numbers whenever
validation runs."""

import os

import torch

from lightning_vae.seeding import noise_seed

NOISE_STREAMS = {"train": 0, "val": 1, "test": 2}


def run_seed() -> int:
    """The run's seed: ``seed_everything``'s (the same on every rank), else torch's."""
    return int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed()))


def noise_generator(device: torch.device) -> torch.Generator:
    """The generator that draws the noise on ``device``: a private one, so that reseeding it
    changes no global state (the CPU's default generator also draws every DataLoader's
    shuffle); on CUDA the device's default generator, whose draws a CUDA graph replays."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return torch.Generator(device=device)


class NoiseSource:
    """The generator of one training module, seeded per stream and position."""

    def __init__(self) -> None:
        self.base_seed = run_seed()
        self.generator: torch.Generator | None = None

    def __getstate__(self) -> dict:
        # Without the generator: it is reseeded before every draw, so its state says nothing,
        # and torch.multiprocessing (ddp_spawn) cannot send one to a child process ("unable to
        # resize file"). The next seed() makes a new one on the device it is asked for.
        return self.__dict__ | {"generator": None}

    def seed(self, device: torch.device, rank: int, stream: str, *position: int
             ) -> torch.Generator:
        """The generator on ``device``, seeded for ``stream`` at ``position`` on ``rank``."""
        if self.generator is None or self.generator.device != torch.device(device):
            self.generator = noise_generator(device)
        self.generator.manual_seed(
            noise_seed(self.base_seed, rank, NOISE_STREAMS[stream], *position))
        return self.generator
