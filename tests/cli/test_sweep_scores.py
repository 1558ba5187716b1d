"""`lightning-vae sweep` with disentanglement scores: runs that tested after fitting report
test/mig (and the other scores) beside their validation metrics, in the table and in a plot
against β."""

import csv
from pathlib import Path

import pytest
from dsprites_args import tiny_dsprites_args
from PIL import Image
from test_sweep import VAL, csv_log

from lightning_vae.cli import main
from lightning_vae.cli.sweep import RunResult, read_final_metrics, write_summary

ROOT = Path(__file__).resolve().parents[2]
SCORES = {"test/mig": 0.125, "test/factorvae_score": 0.75, "test/dci_d": 0.5, "test/sap": 0.0625}


def test_the_scores_of_a_run_that_tested_after_fitting_are_read_with_its_validation(tmp_path):
    metrics_csv = csv_log(tmp_path, [(19, VAL), (20, {**SCORES, "test/elbo": -110.0})])
    assert read_final_metrics(metrics_csv) == {**VAL, **SCORES}


def test_the_summary_tables_and_plots_the_scores_against_beta(tmp_path):
    results = [
        RunResult(1.0, tmp_path / "beta_1", tmp_path / "beta_1/fit.log", 0, {**VAL, **SCORES}),
        RunResult(4.0, tmp_path / "beta_4", tmp_path / "beta_4/fit.log", 0,
                  {**VAL, "test/mig": 0.25}),  # a run that logged one score only
    ]
    paths = write_summary(results, tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(r["beta"], r["test_mig"], r["test_factorvae_score"], r["test_dci_d"], r["test_sap"])
            for r in rows] == [("1", "0.125", "0.750", "0.500", "0.062"),
                               ("4", "0.250", "", "", "")]
    header = paths["markdown"].read_text().splitlines()[0]
    assert header == ("| beta | val_recon | val_kl | val_elbo | val_active_units | test_mig | "
                      "test_factorvae_score | test_dci_d | test_sap | status |")
    assert Image.open(paths["scores_plot"]).size == (500, 400)
    assert paths["scores_plot"].name == "disentanglement.png"


def test_runs_without_scores_get_neither_columns_nor_a_scores_plot(tmp_path):
    paths = write_summary([RunResult(1.0, tmp_path, tmp_path / "fit.log", 0, dict(VAL))],
                          tmp_path)
    assert "test_mig" not in paths["csv"].read_text()
    assert "scores_plot" not in paths and not (tmp_path / "disentanglement.png").exists()


@pytest.mark.slow  # two fit subprocesses on tiny re-rendered dSprites
def test_a_dsprites_sweep_reports_mig_for_each_beta(tmp_path):
    out = tmp_path / "sweep"
    main(["sweep", "--config", str(ROOT / "recipes" / "dsprites_beta_vae.yaml"), "--beta", "1,4",
          "--out", str(out), "--", *tiny_dsprites_args(tmp_path / "data", tmp_path)])
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [row["beta"] for row in rows] == ["1", "4"]
    assert all(row["status"] == "ok" and 0 <= float(row["test_mig"]) <= 1 for row in rows)
    assert (out / "disentanglement.png").is_file()
