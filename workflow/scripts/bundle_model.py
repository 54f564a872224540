"""Rule bundle_model: bundle.json beside a task's trained and evaluated model."""

from pathlib import Path

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from rbcflow.bundle import build_bundle

    build_bundle(
        Path(snakemake.input.model).parent,
        snakemake.params.task,
        snakemake.input.split,
        list(snakemake.params.clips),
        snakemake.params.chain,
        out=snakemake.output.bundle,
    )
