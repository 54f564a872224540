"""Rule evaluate_model: Table-1 metrics, donor bootstrap and ablations of one task."""

from pathlib import Path

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads, tensorflow=True)
    from rbcflow.evaluate import evaluate_task

    evaluate_task(
        snakemake.input.split,
        list(snakemake.params.clips),
        Path(snakemake.input.model).parent,
        snakemake.params.task,
        snakemake.params.evaluate,
        seed=snakemake.params.seed,
    )
