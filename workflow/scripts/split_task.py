"""Rule split_task: donor-grouped train/validation/test split of one task's clips."""

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from rbcflow.split import split_task

    settings = snakemake.params.split
    split_task(
        list(snakemake.params.clips),
        snakemake.params.task,
        snakemake.output.split,
        snakemake.output.audit,
        train=settings["train"],
        validation=settings["validation"],
        test=settings["test"],
        group_by_session=settings["group_by_session"],
        cv_folds=settings["cv_folds"],
        seed=snakemake.params.seed,
    )
