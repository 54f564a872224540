"""Rule predict_samples: a task's model applied to the predict block's recordings."""

from pathlib import Path

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads, tensorflow=True)
    from rbcflow.predict import predict_samples

    out = Path(snakemake.output.samples).parent
    predict_samples(
        Path(snakemake.input.bundle).parent,
        [snakemake.input.sheet],
        out,
        n_boot=snakemake.params.bootstrap,
        seed=snakemake.params.seed,
        example_clips=snakemake.params.example_clips,
        preprocess_dir=snakemake.output.preprocessed,
    )
