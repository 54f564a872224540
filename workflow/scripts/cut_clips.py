"""Rule cut_clips: one clip per kept track of one recording, into HDF5."""

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads)
    from rbcflow.clips import cut_clips

    cut_clips(
        snakemake.input.video,
        snakemake.input.background,
        snakemake.input.tracks,
        snakemake.input.summary,
        snakemake.output.clips,
        snakemake.output.qc,
        sample_info=snakemake.params.info,
        clip_params=snakemake.params.clips,
        detect_params=snakemake.params.detect,
    )
