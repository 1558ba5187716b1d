"""Command arguments for short runs of the dSprites recipes, shared by the W&B and sweep tests."""

from pathlib import Path


def tiny_dsprites_args(data_dir: Path, root: Path) -> list[str]:
    """After ``fit --config recipes/dsprites_*.yaml``: 600 re-rendered images (64 to validate, 128
    to test), a small conv model with 3 latents, two steps validated once, files under root."""
    return ["--data.init_args.data_dir", str(data_dir), "--data.init_args.size", "600",
            "--data.init_args.val_size", "64", "--data.init_args.test_size", "128",
            "--data.init_args.batch_size", "32", "--data.init_args.source", "rendered",
            "--model.arch_options", '{"channels": [4, 8], "hidden_dim": 16}',
            "--model.latent_dim", "3", "--trainer.max_steps", "2",
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(root)]
