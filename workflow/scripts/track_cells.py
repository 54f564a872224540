"""Rule track_cells: detect and link the cells of one recording."""

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads)
    from rbcflow.track import track_video

    info = snakemake.params.info
    track_video(
        snakemake.input.video,
        snakemake.input.background,
        snakemake.output.tracks,
        snakemake.output.summary,
        detect_params=snakemake.params.detect,
        track_params=snakemake.params.track,
        fps=info["fps"],
        um_per_px=info["um_per_px"],
    )
