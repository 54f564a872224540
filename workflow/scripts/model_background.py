"""Rule model_background: background model of one recording and its QC figure."""

import json

from rbcflow.rulelog import limit_threads, rule_logging

with rule_logging(snakemake.log[0]):
    limit_threads(snakemake.threads)
    from rbcflow.background import build_background, save_background, write_background_qc
    from rbcflow.detect import DetectParams

    with open(snakemake.input.meta, encoding="utf-8") as handle:
        meta = json.load(handle)
    settings = snakemake.params.background
    model = build_background(
        snakemake.input.video,
        method=settings["method"],
        n_frames=settings["n_frames"],
        blur_sigma=settings["blur_sigma"],
        mog2_history=settings["mog2_history"],
        mog2_var_threshold=settings["mog2_var_threshold"],
        rolling_window=settings["rolling_window"],
        seed=snakemake.params.seed,
        n_frames_readable=meta["n_frames"],
    )
    save_background(model, snakemake.output.background)
    write_background_qc(
        snakemake.input.video, model, DetectParams(**snakemake.params.detect), snakemake.output.qc
    )
