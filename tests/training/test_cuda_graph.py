"""The training pass replayed as a CUDA graph (``VAE(cuda_graph=True)``): the same gradients
and the same training as eager steps, the settings it cannot honour refused, and on a GPU the
capture, the replays and the eager fallback for odd batches."""

from itertools import pairwise

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE
from lightning_vae.data.device_loader import DeviceLoader
from lightning_vae.training.cuda_graph import GraphedTrainingPass

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
LINEAR_WARMUP = {"name": "linear", "steps": 10}


def tiny_model(**options) -> VAE:
    return VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp",
               arch_options={"hidden_dims": [32]}, iw_samples=0,
               beta_schedule=LINEAR_WARMUP, **options)


def random_images(n: int) -> torch.Tensor:
    """Binary 8x8 images, as floats in {0, 1}."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=generator).round()


def gpu_loader(n: int, batch_size: int, drop_last: bool) -> DeviceLoader:
    """``random_images`` held on the GPU, shuffled the same way in every loader built."""
    images = (random_images(n) * 255).to(torch.uint8)
    return DeviceLoader(images, torch.zeros(n, dtype=torch.long), batch_size, shuffle=True,
                        drop_last=drop_last, device="cuda")


class RecordSteps(pl.Callback):
    """What each training step left behind: global step, logged β, whether it went through the
    graphed pass and whether it was replayed."""

    def __init__(self) -> None:
        self.steps, self.betas, self.graphed, self.replayed = [], [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)
        self.betas.append(float(trainer.callback_metrics["train/beta"]))
        graphed = module._graphed_pass
        self.graphed.append(graphed is not None)
        self.replayed.append(graphed is not None and graphed.captured)


def fit(model: VAE, loader, accelerator: str = "cpu", steps: int = 12,
        ckpt_path: str | None = None, **trainer_options) -> RecordSteps:
    record = RecordSteps()
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator=accelerator, devices=1, log_every_n_steps=1,
                         callbacks=[record], **trainer_options)
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return record


def seeded_fit(cuda_graph: bool, loader, accelerator: str = "cpu") -> tuple[VAE, RecordSteps]:
    pl.seed_everything(0)
    model = tiny_model(cuda_graph=cuda_graph)
    return model, fit(model, loader, accelerator)


# --- the pass itself -------------------------------------------------------------------------


def test_off_cuda_the_pass_leaves_the_gradients_of_one_backward_without_accumulating():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)

    def squares(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": layer(batch).square().sum()}

    layer(x).square().sum().backward()
    expected = [p.grad.clone() for p in layer.parameters()]
    graphed = GraphedTrainingPass(squares, layer.parameters())
    for _ in range(2):  # a second call must not add to the first's gradients
        outputs = graphed(x)
    for parameter, gradient in zip(layer.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient)
    assert not outputs["loss"].requires_grad
    assert not graphed.captured  # no CUDA graph off CUDA


class ReplaysNothing:
    """A captured graph's stand-in, so that replays run off CUDA: replaying it does nothing."""

    def replay(self) -> None:
        pass


def test_a_replay_points_unset_or_replaced_gradients_back_at_the_graphs_own():
    """Lightning unsets the gradients before a validation; the next replay writes into the
    graph's gradient tensors, so .grad must point at them again, and only then be set."""
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    graphed = GraphedTrainingPass(lambda batch: {"loss": layer(batch).sum()}, layer.parameters())
    graphed(x)  # eager off CUDA: leaves the gradients
    graphed.static_input, graphed.static_outputs = x.clone(), {}
    graphed.static_gradients = [p.grad for p in layer.parameters()]
    graphed.graph = ReplaysNothing()
    own = list(graphed.static_gradients)
    graphed(x)
    assert all(p.grad is g for p, g in zip(layer.parameters(), own, strict=True))
    layer.weight.grad, layer.bias.grad = None, torch.zeros(3)
    graphed(x)
    assert layer.weight.grad is own[0] and layer.bias.grad is own[1]


def test_warmup_steps_below_one_are_refused():
    with pytest.raises(ValueError, match="warmup_steps must be at least 1"):
        GraphedTrainingPass(lambda x: {"loss": x.sum()}, [], warmup_steps=0)


# --- the model with cuda_graph=True ----------------------------------------------------------


def test_with_cuda_graph_the_model_trains_exactly_as_with_automatic_optimization():
    """Off CUDA the same code path runs, eagerly: manual optimizer steps through Lightning's
    wrapper, the schedule's weights read from tensors. Same seed, same batches, same weights."""
    loader = DataLoader(TensorDataset(random_images(64)), batch_size=16, shuffle=True)
    plain, plain_steps = seeded_fit(False, loader)
    with pytest.warns(UserWarning, match="needs a CUDA device"):
        graphed, graphed_steps = seeded_fit(True, loader)
    assert not graphed.automatic_optimization
    assert graphed_steps.steps == plain_steps.steps == list(range(1, 13))
    assert graphed_steps.betas == plain_steps.betas  # the linear warm-up, step by step
    assert graphed_steps.betas[:3] == pytest.approx([0.0, 0.1, 0.2])
    pairs = zip(plain.state_dict().items(), graphed.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert torch.equal(a, b), name


@pytest.mark.filterwarnings("ignore:model.cuda_graph=True needs a CUDA device")
def test_the_graphs_weights_follow_the_schedule_even_from_one_dict_updated_in_place():
    """The weight tensors are refilled only when the objective's weights change: compared with
    a copy, so an objective returning the same dict, updated, still counts as changing."""
    model = tiny_model(cuda_graph=True)
    schedule, reused = model.objective.weights, {}

    def weights(step: int) -> dict[str, float]:
        reused.update(schedule(step))
        return reused

    model.objective.weights = weights
    record = fit(model, DataLoader(TensorDataset(random_images(64)), batch_size=16), steps=4)
    assert record.betas == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert model._graph_weights["beta"].item() == pytest.approx(0.3)


@pytest.mark.parametrize("saved_graphed, resumed_graphed", [
    (True, False), (False, True), (True, True), (False, False)])
@pytest.mark.filterwarnings("ignore:model.cuda_graph=True needs a CUDA device")
def test_a_checkpoint_resumes_at_its_step_with_or_without_the_graph(
        tmp_path, saved_graphed, resumed_graphed):
    """Four steps saved, resumed to eight: four more steps, the β warm-up going on from 0.4."""
    loader = DataLoader(TensorDataset(random_images(64)), batch_size=16)
    pl.seed_everything(0)
    trainer = pl.Trainer(max_steps=4, logger=False, default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(tiny_model(cuda_graph=saved_graphed), loader)
    checkpoint = str(tmp_path / "checkpoints" / "epoch=0-step=4.ckpt")
    resumed = tiny_model(cuda_graph=resumed_graphed)
    record = fit(resumed, loader, steps=8, ckpt_path=checkpoint)
    assert record.steps == [5, 6, 7, 8]
    assert record.betas == pytest.approx([0.4, 0.5, 0.6, 0.7])
    assert record.graphed == [resumed_graphed] * 4


@pytest.mark.parametrize("trainer_options, message", [
    ({"gradient_clip_val": 1.0}, "cannot clip gradients: remove trainer.gradient_clip_val"),
    ({"accumulate_grad_batches": 2}, "cannot accumulate gradients"),
])
def test_settings_the_graph_cannot_honour_are_refused_with_the_fix(trainer_options, message):
    loader = DataLoader(TensorDataset(random_images(32)), batch_size=16)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=message):
        fit(tiny_model(cuda_graph=True), loader, **trainer_options)


def test_a_learning_rate_scheduler_is_refused_rather_than_left_unstepped():
    class WithScheduler(VAE):
        def configure_optimizers(self):
            optimizer = super().configure_optimizers()
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]

    model = WithScheduler(image_shape=(1, 8, 8), latent_dim=4, arch="mlp", iw_samples=0,
                          cuda_graph=True)
    loader = DataLoader(TensorDataset(random_images(32)), batch_size=16)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="remove the lr_scheduler"):
        fit(model, loader)


def test_cuda_graph_with_a_compile_mode_that_replays_its_own_graphs_is_refused():
    with pytest.raises(ValueError, match="replays CUDA graphs of its own"):
        tiny_model(cuda_graph=True, compile_mode="reduce-overhead")


def test_cuda_graph_is_a_saved_hyperparameter_off_by_default():
    assert tiny_model().hparams.cuda_graph is False
    assert tiny_model(cuda_graph=True).hparams.cuda_graph is True


# --- on a GPU ----------------------------------------------------------------------------


@CUDA
def test_replayed_steps_train_as_eager_steps_do_on_a_gpu():
    """Float32, same seed: the graph replays eager's kernels and draws eager's ε at each step
    (the generator is seeded before every replay), so the weights agree to rounding."""
    plain, _ = seeded_fit(False, gpu_loader(256, 16, drop_last=True), "gpu")
    graphed, record = seeded_fit(True, gpu_loader(256, 16, drop_last=True), "gpu")
    assert record.replayed == [False] * 3 + [True] * 9  # three warm-up steps, then the graph
    assert record.steps == list(range(1, 13))
    assert record.betas[:4] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    pairs = zip(plain.state_dict().items(), graphed.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)


@CUDA
def test_a_last_partial_batch_runs_eagerly_beside_the_graph():
    loader = gpu_loader(120, 16, drop_last=False)  # seven batches of 16, then one of 8
    pl.seed_everything(0)
    model = tiny_model(cuda_graph=True)
    record = fit(model, loader, "gpu", steps=24)  # three epochs
    assert record.steps == list(range(1, 25))
    assert record.replayed[:7] == [False] * 3 + [True] * 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


class CapturedBatchSize(pl.Callback):
    """The batch size the graph was captured on, read before teardown drops the graph."""

    def __init__(self) -> None:
        self.size: int | None = None

    def on_train_end(self, trainer, module) -> None:
        graphed = module._graphed_pass
        self.size = graphed.static_input.shape[0] if graphed.captured else None


@CUDA
def test_a_partial_batch_at_the_capture_step_is_not_captured():
    """Three batches of 16 and one of 8 per epoch: the fourth step, where the capture falls
    after three warm-ups, is the partial batch (as after a mid-epoch resume four steps before
    an epoch's end). Captured on it, the graph would replay only the partial batches and
    every full batch would run eagerly. (Written without a GPU: first run it on one.)"""
    pl.seed_everything(0)
    captured = CapturedBatchSize()
    trainer = pl.Trainer(max_steps=12, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="gpu", devices=1, callbacks=[captured])
    trainer.fit(tiny_model(cuda_graph=True), gpu_loader(56, 16, drop_last=False))
    assert captured.size == 16


@CUDA
def test_fp16_with_its_gradient_scaler_is_refused_with_the_fix():
    loader = DataLoader(TensorDataset(random_images(32)), batch_size=16)
    with pytest.raises(ValueError, match="cannot unscale fp16 gradients: use trainer"):
        fit(tiny_model(cuda_graph=True), loader, "gpu", precision="16-mixed")


class WeightsAtEpochStart(pl.Callback):
    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.weights.append(flat_weights(module))


def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    """All weights in one vector on the CPU (Lightning moves the model there after fitting)."""
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


@CUDA
def test_training_goes_on_after_a_validation_unsets_the_gradients():
    """Lightning sets every ``.grad`` to None before validating; the replays must point them
    back at the graph's gradients, or the optimizer has nothing left to step."""
    pl.seed_everything(0)
    model = tiny_model(cuda_graph=True)
    record = WeightsAtEpochStart()
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="gpu", devices=1, callbacks=[record])
    trainer.fit(model, gpu_loader(128, 16, drop_last=True),
                gpu_loader(32, 16, drop_last=False))
    weights = [*record.weights, flat_weights(model)]
    moved = [(after - before).abs().max().item() for before, after in pairwise(weights)]
    # Epochs 2 and 3 follow validations. (After fit the gradients are None again: the last
    # thing fit does is validate.)
    assert all(step > 1e-4 for step in moved), moved


@CUDA
def test_a_pass_compiled_without_cuda_graphs_of_its_own_is_captured_too():
    """``compile_mode="default"``: Inductor's fused kernels, launched from the one graph."""
    pl.seed_everything(0)
    model = tiny_model(cuda_graph=True, compile_mode="default")
    start = flat_weights(model)
    record = fit(model, gpu_loader(256, 16, drop_last=True), "gpu")
    assert record.replayed == [False] * 3 + [True] * 9
    moved = flat_weights(model) - start
    assert torch.isfinite(moved).all() and moved.abs().max() > 1e-4
