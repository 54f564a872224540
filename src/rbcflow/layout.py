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
TASK_FILES = ("metrics", "history", "predictions", "split", "audit", "saliency", "models")
#: A model's files the report reads (roles of :func:`model_paths`).
MODEL_FILES = ("metrics", "history", "predictions", "saliency")


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


def trained_models(train: dict) -> list[str]:
    """The models trained per task, from a complete ``train`` config section:
    ``train.models``, or ``[train.model]`` when that is empty; the first is the task's."""
    return list(train["models"]) or [train["model"]]


def model_folder(results: str | Path, task: str, model: str | None = None) -> Path:
    """A model's folder: ``models/<task>/`` for the task's model (``model`` None),
    ``models/<task>/extra/<model>/`` for the other models of ``train.models``."""
    folder = Path(results) / "models" / task
    return folder if model is None else folder / "extra" / model


def model_paths(results: str | Path, task: str, model: str | None = None) -> dict[str, Path]:
    """Where evaluation writes a model's metrics, history, predictions and saliency."""
    folder = model_folder(results, task, model)
    return {"metrics": folder / "metrics.json", "history": folder / "history.csv",
            "predictions": folder / "predictions.tsv", "saliency": folder / "saliency.npy"}


def task_paths(results: str | Path, task: str) -> dict[str, Path]:
    """Where the workflow writes a task's split, its model's outputs and metrics, and the
    table of its models (``models``: every model of ``train.models``, the task's first)."""
    results = Path(results)
    return {**model_paths(results, task),
            "models": results / "models" / task / "extra" / "models.tsv",
            "split": results / "splits" / f"{task}.tsv",
            "audit": results / "splits" / f"{task}_audit.json"}
