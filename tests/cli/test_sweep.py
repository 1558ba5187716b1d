"""`lightning-vae sweep`: one fit per β, a summary table and a rate–distortion plot."""

import csv
import sys
from pathlib import Path

import pytest
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from lightning_vae.cli import main
from lightning_vae.cli.sweep import (
    RunResult,
    fit_command,
    gpu_slots,
    parse_betas,
    progress_line,
    read_final_metrics,
    write_summary,
)

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "mnist_vae.yaml")


def csv_log(folder: Path, rows: list[tuple[int, dict[str, float]]]) -> Path:
    """A metrics.csv written by Lightning's CSVLogger, as a sweep run writes it."""
    logger = CSVLogger(folder, name="", version="")
    for step, metrics in rows:
        logger.log_metrics(metrics, step)
    logger.save()
    return Path(logger.log_dir) / "metrics.csv"


VAL = {"val/recon": 90.5, "val/kl": 25.25, "val/elbo": -115.75, "val/active_units": 12.0}


def test_betas_are_parsed_from_a_comma_separated_list():
    assert parse_betas("0.25,1,4,16") == [0.25, 1.0, 4.0, 16.0]
    for bad, message in (("1,x", "comma-separated numbers"), ("0,1", "positive"),
                         ("1,1", "distinct")):
        with pytest.raises(ValueError, match=message):
            parse_betas(bad)


def test_betas_that_would_share_a_run_folder_are_refused():
    """Runs are filed, named and summarised by β to 6 significant digits (beta_0.1): two
    values equal to that precision would write one folder and report one run twice."""
    with pytest.raises(ValueError, match=r"0\.1 and 0\.1000001 .*beta_0\.1"):
        parse_betas("0.1,0.1000001")
    assert parse_betas("0.1,0.10001") == [0.1, 0.10001]


def test_fit_command_sets_beta_and_a_csv_logger_after_the_users_arguments(tmp_path):
    command = fit_command([RECIPE], 0.25, tmp_path / "beta_0.25", ["--trainer.max_epochs", "2"])
    assert command[:4] == [sys.executable, "-m", "lightning_vae.cli", "fit"]
    assert command[4:8] == ["--config", RECIPE, "--trainer.max_epochs", "2"]
    assert command[8] == "--model.beta=0.25"
    assert command[-1].startswith("--trainer.logger+=")
    assert '"save_dir": "' + str(tmp_path / "beta_0.25") + '"' in command[-1]


def test_parallel_runs_take_the_visible_gpus_in_turn_one_each():
    assert gpu_slots(2, 0, None) == [None, None]
    assert gpu_slots(4, 4, None) == ["0", "1", "2", "3"]
    assert gpu_slots(3, 2, None) == ["0", "1", "0"]
    assert gpu_slots(2, 2, "4,6") == ["4", "6"]  # this process already sees only GPUs 4 and 6


def test_final_metrics_are_the_last_validation_values_of_the_csv_log(tmp_path):
    metrics_csv = csv_log(tmp_path, [
        (0, {"train/loss": 200.0}),
        (9, {**VAL, "val/kl": 30.0}),
        (19, {"train/loss": 120.0}),
        (19, VAL),
        (20, {"train/loss": 119.0}),
    ])
    assert read_final_metrics(metrics_csv) == VAL


def test_a_log_without_validation_says_why_and_how_to_fix_it(tmp_path):
    metrics_csv = csv_log(tmp_path, [(0, {"train/loss": 200.0})])
    with pytest.raises(ValueError, match=r"validation never ran.*limit_train_batches"):
        read_final_metrics(metrics_csv)
    with pytest.raises(FileNotFoundError, match=r"no CSV log.*fast_dev_run.*limit_train_batches"):
        read_final_metrics(tmp_path / "missing" / "metrics.csv")


def test_summary_keeps_the_finished_runs_and_names_the_log_of_a_failed_one(tmp_path):
    results = [
        RunResult(1.0, tmp_path / "beta_1", tmp_path / "beta_1/fit.log", 0, dict(VAL)),
        RunResult(4.0, tmp_path / "beta_4", tmp_path / "beta_4/fit.log", 1,
                  error="exited with status 1"),
        RunResult(16.0, tmp_path / "beta_16", tmp_path / "beta_16/fit.log", 0,
                  {"val/recon": 120.0, "val/kl": 3.5, "val/elbo": -123.5,
                   "val/active_units": 2.0}),
    ]
    paths = write_summary(results, tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(r["beta"], r["val_recon"], r["val_kl"], r["val_elbo"], r["val_active_units"])
            for r in rows] == [("1", "90.50", "25.25", "-115.75", "12"), ("4", "", "", "", ""),
                               ("16", "120", "3.50", "-123.50", "2")]
    assert rows[1]["status"] == f"failed: exited with status 1 (log: {tmp_path}/beta_4/fit.log)"
    markdown = paths["markdown"].read_text().splitlines()
    assert markdown[0] == "| beta | val_recon | val_kl | val_elbo | val_active_units | status |"
    assert markdown[2] == "| 1 | 90.50 | 25.25 | -115.75 | 12 | ok |"
    assert len(markdown) == 5
    assert Image.open(paths["plot"]).format == "PNG"


@pytest.mark.slow  # a fit subprocess: ~10 s to import Lightning on 2 busy cores
def test_a_failing_run_exits_nonzero_after_writing_the_summary(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--config", str(tmp_path / "missing.yaml"), "--beta", "2",
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    log = tmp_path / "out" / "beta_2" / "fit.log"
    out, err = capsys.readouterr()
    assert "β=2 failed: exited with status" in err
    assert out.startswith(f"β=2: started, log in {log}\n[1/1] β=2 failed after ")
    assert "missing.yaml" in log.read_text()
    assert "failed" in (tmp_path / "out" / "summary.md").read_text()
    assert not (tmp_path / "out" / "rate_distortion.png").exists()


def test_sweep_options_are_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["sweep", "--config", RECIPE, "--beta", "1,-4"])
    assert "distinct positive numbers" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    mistyped = ["--config", "recipes/mnist_vea.yaml"]
    for configs in (mistyped, ["--config", "recipes/mnist_vae.yaml", "--", *mistyped]):
        with pytest.raises(SystemExit):
            main(["sweep", "--beta", "1,4", *configs])
        assert "no recipe recipes/mnist_vea.yaml" in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == []  # no run started, no folder written


@pytest.mark.slow
def test_sweep_on_real_mnist_shows_the_larger_beta_with_the_smaller_kl(shared_mnist_dir,
                                                                       tmp_path):
    out = tmp_path / "sweep"
    main(["sweep", "--config", RECIPE, "--beta", "0.25,16", "--out", str(out), "--parallel", "2",
          "--",
          "--data.init_args.data_dir", str(shared_mnist_dir),
          "--data.init_args.download", "false",
          "--data.init_args.batch_size", "64",
          "--trainer.accelerator", "cpu",
          "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "100",  # an epoch of 100 steps ends with validation
          "--trainer.limit_val_batches", "5",
          "--trainer.enable_progress_bar", "false"])
    rows = {float(row["beta"]): row for row in csv.DictReader((out / "summary.csv").open())}
    assert set(rows) == {0.25, 16.0}
    assert all(row["status"] == "ok" for row in rows.values())
    assert float(rows[16.0]["val_kl"]) < float(rows[0.25]["val_kl"])
    assert float(rows[16.0]["val_recon"]) > float(rows[0.25]["val_recon"])
    assert Image.open(out / "rate_distortion.png").size == (500, 400)
    assert "| 0.25 |" in (out / "summary.md").read_text()


def test_each_finished_run_is_reported_as_it_ends_with_its_elbo_or_its_log(tmp_path):
    done = RunResult(4.0, tmp_path / "beta_4", tmp_path / "beta_4/fit.log", 0, dict(VAL))
    failed = RunResult(16.0, tmp_path / "beta_16", tmp_path / "beta_16/fit.log", 1,
                       error="exited with status 1")
    assert progress_line(done, 1, 2, 34.6) == "[1/2] β=4 finished in 35 s: val/elbo -115.75"
    assert progress_line(failed, 2, 2, 3.2) == (
        f"[2/2] β=16 failed after 3 s: exited with status 1; log: {tmp_path}/beta_16/fit.log")
