"""Rule train_model: train one task's model (and its single-frame baseline)."""

from pathlib import Path

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads, tensorflow=True)
    from rbcflow.train import train_task

    train_task(
        snakemake.input.split,
        list(snakemake.params.clips),
        Path(snakemake.output.model).parent,
        snakemake.params.train,
        seed=snakemake.params.seed,
        ablations=snakemake.params.ablations,
    )
