"""Where the workflow's files live: one function per folder layout, shared by the
workflow's input functions, the package and the command line, so no path is spelled twice.
"""

from __future__ import annotations

from pathlib import Path

#: A recording's files the report reads (roles of :func:`output_paths`).
SAMPLE_FILES = ("ingest_json", "qc", "clips", "clips_qc")
#: Files of the recording shown in the report's pipeline panels (``video``: the recording).
PIPELINE_FILES = ("video", "background", "tracks", "tracks_summary")
#: A task's files the report reads (roles of :func:`task_paths`).
TASK_FILES = ("metrics", "history", "predictions", "split", "audit")


def output_paths(outdir: str | Path, sample: str) -> dict[str, Path]:
    """Where the per-recording chain writes one recording's files below ``outdir``."""
    out = Path(outdir)
    return {
        "ingest_json": out / "ingest" / f"{sample}.json",
        "contact_sheet": out / "ingest" / f"{sample}.png",
        "background": out / "background" / f"{sample}.npz",
        "background_qc": out / "background" / f"{sample}_qc.png",
        "tracks": out / "tracks" / f"{sample}.parquet",
        "tracks_summary": out / "tracks" / f"{sample}_tracks.tsv",
        "clips": out / "clips" / f"{sample}.h5",
        "clips_qc": out / "clips" / f"{sample}_qc.tsv",
        "qc": out / "qc" / f"{sample}.json",
    }


def task_paths(results: str | Path, task: str) -> dict[str, Path]:
    """Where the workflow writes a task's split, model outputs and metrics."""
    results = Path(results)
    model = results / "models" / task
    return {"metrics": model / "metrics.json", "history": model / "history.csv",
            "predictions": model / "predictions.tsv",
            "split": results / "splits" / f"{task}.tsv",
            "audit": results / "splits" / f"{task}_audit.json"}
