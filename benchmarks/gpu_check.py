"""On a CUDA GPU: the training step replayed from one CUDA graph with the optimizer's step
inside it (capturable fused Adam) computes what eager steps compute, and how much faster it is.

Two copies of the recipe's conv VAE, same initial weights, float32 (TF32 off), train ``--steps``
steps on the same binary batches and the same noise (the device generator seeded per step):
one eagerly (forward, backward, ``optimizer.step()``), one through ``GraphedTrainingPass`` with
the optimizer (three eager warm-ups, then replays). Asserts the weights and Adam's state agree
to rounding, then times both (and bf16) per step. Exits non-zero on a mismatch. Usage::

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
    parser.add_argument("--steps", type=int, default=30, help="steps compared")
    parser.add_argument("--timed", type=int, default=500, help="steps timed")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    generator = torch.Generator(device).manual_seed(1)
    batches = [torch.rand(args.batch_size, 1, 28, 28, device=device, generator=generator).round()
               for _ in range(args.steps)]

    (eager_model, eager_opt), (graph_model, graph_opt) = build(device, False), build(device, True)
    assert graph_opt.param_groups[0]["capturable"] and graph_opt.param_groups[0]["fused"]
    graphed = stepper(graph_model, graph_opt, graphed=True)
    run(stepper(eager_model, eager_opt, graphed=False), eager_model, batches)
    run(graphed, graph_model, batches)
    assert graphed.captured, "the graph was never captured"
    worst = 0.0
    for (name, a), b in zip(eager_model.state_dict().items(), graph_model.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)
        worst = max(worst, (a - b).abs().max().item())
    for p_eager, p_graph in zip(eager_model.parameters(), graph_model.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(graph_opt.state[p_graph][key].float().cpu(),
                                       eager_opt.state[p_eager][key].float().cpu(),
                                       atol=1e-6, rtol=1e-4, msg=key)
    print(f"{args.steps} steps, float32: graphed (optimizer inside) == eager; largest weight "
          f"difference {worst:.2e}")

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
