"""Rule preprocess_batch: the per-recording chain for each recording of one batch."""

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads)
    from rbcflow.preprocess import preprocess_batch

    preprocess_batch(snakemake.params.rows, snakemake.output.folder, snakemake.params.chain)
