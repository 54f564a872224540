"""Rule list_task_models: a task's models side by side (models/<task>/extra/models.tsv)."""

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from rbcflow.evaluate import write_models_table

    metrics = [snakemake.input.main, *snakemake.input.extra]
    models = dict(zip(snakemake.params.models, metrics, strict=True))
    write_models_table(models, snakemake.output.table)
