"""On a CUDA GPU: the training step replayed from one CUDA graph with the optimizer's step
inside it (capturable fused Adam) computes what eager steps compute, and how much faster it is.

Two copies of the recipe's conv VAE, same initial weights, float32 (TF32 off), train ``--steps``
steps on the same binary batches and the same noise (the device generator seeded per step):
eagerly (forward, backward, ``optimizer.step()``), twice, and through ``GraphedTrainingPass``
with the optimizer (three eager warm-ups, then replays), deterministic cuDNN. Asserts the
graphed weights within rounding of the eager ones (10 times the spread between the two eager
runs, or 1e-5, or 0.1 % of how far training moved them) and the same Adam step counts, then
times both (and bf16) per step. Exits non-zero on a mismatch. Usage::

    python benchmarks/gpu_check.py                  # about 20 s on an H100/H200
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml
from torch import Tensor
from train_throughput import RECIPE

from lightning_vae import VAE
from lightning_vae.training.cuda_graph import GraphedTrainingPass
from lightning_vae.training.noise import noise_generator


def build(device: torch.device, cuda_graph: bool) -> tuple[VAE, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = VAE(**{**yaml.safe_load(RECIPE.read_text())["model"], "cuda_graph": cuda_graph,
                   "iw_samples": 0}).to(device).train()
    model._train_generator = noise_generator(device)
    return model, model.configure_optimizers()


def flat(model: VAE) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def stepper(model: VAE, optimizer: torch.optim.Optimizer, graphed: bool):
    def training_pass(x: Tensor) -> dict[str, Tensor]:
        return model._objective(model._training_terms(x))

    if graphed:
        return GraphedTrainingPass(training_pass, model.parameters(), optimizer=optimizer)

    def eager(x: Tensor) -> dict[str, Tensor]:
        optimizer.zero_grad()
        outputs = training_pass(x)
        outputs["loss"].backward()
        optimizer.step()
        return outputs
    return eager


def run(step, model: VAE, batches: list[Tensor], bf16: bool = False) -> float:
    """Seconds per step over ``batches``, the device synchronised at both ends."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i, x in enumerate(batches):
        model._train_generator.manual_seed(i)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            step(x)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps compared")
    parser.add_argument("--timed", type=int, default=500, help="steps timed")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    generator = torch.Generator(device).manual_seed(1)
    batches = [torch.rand(args.batch_size, 1, 28, 28, device=device, generator=generator).round()
               for _ in range(args.steps)]

    torch.backends.cudnn.deterministic = True  # else two eager runs differ too (atomics)
    runs = {}
    for name, graphed in (("eager", False), ("eager again", False), ("graphed", True)):
        model, optimizer = build(device, graphed)
        step = stepper(model, optimizer, graphed)
        run(step, model, batches)
        assert not graphed or step.captured, "the graph was never captured"
        assert not graphed or optimizer.param_groups[0]["capturable"]
        runs[name] = (flat(model), optimizer)
    start = flat(build(device, False)[0])
    moved = (runs["eager"][0] - start).abs().max().item()
    floor = (runs["eager again"][0] - runs["eager"][0]).abs().max().item()
    apart = (runs["graphed"][0] - runs["eager"][0]).abs().max().item()
    steps = {name: {float(s["step"]) for s in optimizer.state.values()}
             for name, (_, optimizer) in runs.items()}
    print(f"{args.steps} steps, float32: weights moved up to {moved:.2e}; graphed (optimizer "
          f"inside) differs from eager by {apart:.2e}, eager from eager by {floor:.2e}; Adam "
          f"step counts {steps}")
    assert steps["graphed"] == steps["eager"] == {float(args.steps)}, steps
    assert apart <= max(1e-5, 10 * floor, 1e-3 * moved), "graphed steps differ from eager ones"
    print("check passed: the captured step equals eager steps")
    torch.backends.cudnn.deterministic = False

    timed = (batches * (args.timed // len(batches) + 1))[: args.timed]
    for bf16 in (False, True):
        eager_model, eager_opt = build(device, False)
        graph_model, graph_opt = build(device, True)
        eager, graphed = stepper(eager_model, eager_opt, False), stepper(graph_model, graph_opt,
                                                                         True)
        for step, model in ((eager, eager_model), (graphed, graph_model)):
            run(step, model, timed[:20], bf16)  # warm-up and capture
        eager_s = run(eager, eager_model, timed, bf16)
        graph_s = run(graphed, graph_model, timed, bf16)
        print(f"{'bf16' if bf16 else 'fp32'}: eager {1000 * eager_s:.3f} ms/step, one graph "
              f"(forward, backward, optimizer) {1000 * graph_s:.3f} ms/step: "
              f"{eager_s / graph_s:.2f}x")


if __name__ == "__main__":
    main()
