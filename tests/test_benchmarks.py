"""The training-speed benchmark compares like with like, and one broken measurement does not
cost the others."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_throughput import GPU_FRAGMENT, Spec, measure, package_settings  # noqa: E402


def package_spec(**changes) -> Spec:
    fields = dict(name="(b)", kind="package", model="conv", batch_size=128, epochs=1,
                  limit_batches=2, device="cpu", data_dir="unused")
    return Spec(**{**fields, **changes})


def test_the_hand_written_loop_reads_the_settings_the_trainer_runs_with():
    settings = package_settings(package_spec(
        configs=[str(GPU_FRAGMENT)], overrides=["model.cuda_graph=false"]))
    assert settings["trainer"]["precision"] == "bf16-mixed"  # from the fragment
    assert settings["data"]["init_args"]["drop_last"] is True
    assert settings["data"]["init_args"]["binarize"] == "dynamic"  # kept from the recipe
    assert settings["model"]["cuda_graph"] is False  # the override wins
    assert settings["model"]["channels_last"] is True
    tiny = package_settings(package_spec(model="tiny"))["model"]
    assert (tiny["arch"], tiny["latent_dim"], tiny["arch_options"]) == (
        "mlp", 2, {"hidden_dims": [8]})


def test_a_failed_measurement_is_reported_and_left_out(capsys):
    broken = package_spec(name="broken", overrides=["model.no_such_option=1"])
    assert measure(broken, timeout=120) is None
    assert "broken failed" in capsys.readouterr().err


def test_the_loop_steps_a_graphed_training_pass_where_the_trainer_would(shared_mnist_dir):
    """Off CUDA the pass runs eagerly, through the same code as on a GPU."""
    loop = package_spec(name="(a')", kind="loop", model="tiny", batch_size=16,
                        data_dir=str(shared_mnist_dir), overrides=["model.cuda_graph=true"])
    measured = measure(loop, timeout=120)
    assert measured is not None
    assert measured.images == [2 * 16]  # one timed epoch of two batches, after the warm-up
