"""Rule evaluate_tracking: each recording's kept tracks scored against its truth."""

from pathlib import Path

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from rbcflow.trackeval import evaluate_recording

    out = Path(snakemake.output.scores)
    for recording in snakemake.params.recordings:
        evaluate_recording(
            recording["tracks"],
            recording["tracks_summary"],
            recording["truth"],
            out / f"{recording['sample']}.json",
            max_distance_px=snakemake.params.max_distance_px,
        )
