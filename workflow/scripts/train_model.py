"""Rules train_model and train_baseline: train one model on one task's split."""

from pathlib import Path

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from rbcflow.train import train_task

    train_task(
        snakemake.input.split,
        list(snakemake.input.clips),
        Path(snakemake.output.model).parent,
        snakemake.params.train,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
