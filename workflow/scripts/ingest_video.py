"""Rule ingest_video: metadata JSON and contact sheet of one recording."""

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads)
    from rbcflow.ingest import ingest_video

    info = snakemake.params.info
    ingest_video(
        snakemake.input.video,
        sample=info["sample"],
        fps_sheet=info["fps"],
        out_json=snakemake.output.meta,
        out_png=snakemake.output.contact_sheet,
        allow_truncated=snakemake.params.allow_truncated,
        fps_tolerance=snakemake.params.fps_tolerance,
    )
