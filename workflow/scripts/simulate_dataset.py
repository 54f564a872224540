"""Rule simulate_dataset: write the simulated demo dataset and its sample sheet."""

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from rbcflow.simulate import simulate_dataset

    sheet = simulate_dataset(
        snakemake.params.outdir,
        preset=snakemake.params.preset,
        seed=snakemake.params.seed,
        effect_size=snakemake.params.effect_size,
        video_format=snakemake.params.video_format,
        workers=snakemake.threads,
    )
    log.info("sample sheet written: %s", sheet)
