"""The training-speed benchmark compares like with like, and one broken measurement does not
cost the others."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def counted_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def test_bytecode_counts_repeat_exactly_and_grow_with_the_work():
    from host_work import BytecodeCounter

    def count(n: int) -> BytecodeCounter:
        counter = BytecodeCounter()
        counter.start()
        counted_loop(n)
        counter.stop()
        return counter

    loop = counted_loop.__code__
    assert count(10).bytecodes[loop] == count(10).bytecodes[loop] > 0
    per_ten = count(20).bytecodes[loop] - count(10).bytecodes[loop]
    assert per_ten > 0 and count(30).bytecodes[loop] - count(20).bytecodes[loop] == per_ten
    counter = count(10)
    assert counter.calls[loop] == 1
    assert counter.inclusive[loop] == counter.bytecodes[loop]  # it calls no Python function


def test_host_only_measures_both_pipelines_without_device_work(shared_mnist_dir, capsys):
    from host_work import host_work

    common = dict(model="tiny", batch_size=16, epochs=0, limit_batches=None, device="cpu",
                  data_dir=str(shared_mnist_dir), configs=[str(GPU_FRAGMENT)])
    loop, package = host_work(Spec(name="(b)", kind="package", **common),
                              Spec(name="(a')", kind="loop", **common),
                              warmup=3, timed=10, counted=10, rows=5)
    assert (loop.name, package.name) == ("(a')", "(b)")
    for result in (loop, package):
        assert not result.device_work
        assert result.ms_per_step > 0
        assert abs(sum(result.by_package.values()) - result.bytecodes_per_step) < 1e-6
        assert len(result.by_function) == 5
        assert all(inclusive >= own >= 0 for _, own, inclusive, _ in result.by_function)
    assert package.bytecodes_per_step > 5 * loop.bytecodes_per_step > 0
    assert package.by_package["pytorch_lightning"] > 0
    assert "pytorch_lightning" not in loop.by_package
    assert "NullGraph" not in str(loop.by_function)  # the meter's own code is left out
    printed = capsys.readouterr().out
    assert "do not depend on the machine's load" in printed and "bytecodes/step" in printed


def test_without_a_graph_the_whole_steps_are_measured_and_said_to_be(shared_mnist_dir):
    from host_work import host_work

    common = dict(model="tiny", batch_size=16, epochs=0, limit_batches=None, device="cpu",
                  data_dir=str(shared_mnist_dir))
    loop, package = host_work(
        Spec(name="(b)", kind="package", overrides=["trainer.enable_progress_bar=false"],
             **common),
        Spec(name="(a')", kind="loop", **common), warmup=3, timed=5, counted=5, rows=3)
    assert loop.device_work and package.device_work
    assert package.bytecodes_per_step > loop.bytecodes_per_step > 0
    assert loop.by_package["torch"] > 0  # the eager step's Python: modules, Adam


def test_host_work_longer_than_an_epoch_is_refused_naming_the_limit(shared_mnist_dir):
    from host_work import StepMeter, loop_host_work

    spec = Spec(name="(a')", kind="loop", model="tiny", batch_size=128, epochs=0,
                limit_batches=None, device="cpu", data_dir=str(shared_mnist_dir))
    with pytest.raises(SystemExit, match=r"make 501 steps, more than one epoch \(469 batches"):
        loop_host_work(spec, StepMeter(warmup=100, timed=300, counted=100), top=3)


def test_profile_step_host_only_prints_both_pipelines_per_step(shared_mnist_dir):
    """The command line of ``--host-only``: a row of bytecodes and host ms for each pipeline,
    (b) doing more host work than (a')."""
    command = [sys.executable, str(ROOT / "benchmarks" / "profile_step.py"), "--host-only",
               "--model", "tiny", "--data-dir", str(shared_mnist_dir), "--warmup", "2",
               "--steps", "3", "--counted", "3", "--rows", "2"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    rows = dict(re.findall(r"^(\(a'\) hand-written loop|\(b\) lightning-vae)\s+(\d+)\s+[\d.]+$",
                           out, re.MULTILINE))
    assert int(rows["(b) lightning-vae"]) > int(rows["(a') hand-written loop"]) > 0
