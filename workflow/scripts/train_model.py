"""Rule train_model / train_extra_model: train one of a task's models (and, for the
task's model, its single-frame baseline)."""

from pathlib import Path

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log.main):
    # TensorFlow on one thread whatever the job's threads: its float sums then do not
    # depend on them (the same model locally and through workflow/profiles/slurm). The
    # job's threads read and augment batches ahead (the batches do not depend on them).
    limit_threads(1, tensorflow=True)
    from rbcflow.train import train_task

    train_task(
        snakemake.input.split,
        list(snakemake.params.clips),
        Path(snakemake.output.model).parent,
        snakemake.params.train,
        seed=snakemake.params.seed,
        ablations=snakemake.params.ablations,
        model_name=snakemake.params.model,
        runtime_path=snakemake.log.runtime,
        reader_threads=snakemake.threads,
    )
