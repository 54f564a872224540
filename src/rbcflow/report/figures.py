"""The report's figures (matplotlib, Agg backend): pure functions from data to a Figure.

Each ``*_figure`` function takes already-loaded data and returns a ``Figure``;
``save_figure`` writes it atomically as PNG. Images are shown with their own pixel grid
(no interpolation) so what the page shows is what the pipeline computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rbcflow.io.atomic import atomic_path  # noqa: E402

DPI = 110
SPLIT_COLOURS = {"train": "#4c72b0", "validation": "#dd8452", "test": "#55a868"}
CLASS_COLOURS = ("#4c72b0", "#c44e52")
CONDITION_CMAP = "tab10"

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": DPI,
})


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight",
                        metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def placeholder_figure(message: str) -> Figure:
    """A small figure that states why a panel could not be drawn (no data is invented)."""
    fig = plt.figure(figsize=(6, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True, color="#555555")
    return fig


def _grid(n: int, max_columns: int = 4) -> tuple[int, int]:
    columns = min(max(n, 1), max_columns)
    return math.ceil(max(n, 1) / columns), columns


def learning_curves_figure(
    histories: Mapping[str, pd.DataFrame], best_epochs: Mapping[str, int | None] | None = None
) -> Figure:
    """Seed 000 Fig. 3A-D: accuracy (top row) and loss (bottom row) per epoch, per task."""
    tasks = list(histories)
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.3 * len(tasks) + 0.6, 5.2),
                             squeeze=False, sharex="col")
    for column, task in enumerate(tasks):
        history = histories[task]
        epochs = history["epoch"].to_numpy()
        for row, (metric, label) in enumerate((("accuracy", "Accuracy"), ("loss", "Loss"))):
            ax = axes[row, column]
            ax.plot(epochs, history[metric], color=SPLIT_COLOURS["train"], label="training")
            ax.plot(epochs, history[f"val_{metric}"], color=SPLIT_COLOURS["validation"],
                    label="validation")
            best = (best_epochs or {}).get(task)
            if best is not None:
                ax.axvline(best, color="#999999", lw=0.8, ls="--")
            if metric == "accuracy":
                ax.set_ylim(min(0.4, float(np.nanmin(history[["accuracy", "val_accuracy"]])))
                            - 0.02, 1.02)
                ax.set_title(f"{chr(65 + column)}  {task}", loc="left")
            else:
                ax.set_ylim(bottom=0)
                ax.set_xlabel("epoch")
            if column == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def confusion_matrices_figure(metrics_by_task: Mapping[str, Mapping]) -> Figure:
    """Test-set confusion matrix per task: counts and the share of each true class."""
    tasks = [t for t, m in metrics_by_task.items() if (m.get("test") or {}).get("confusion_matrix")]
    rows, columns = _grid(len(tasks))
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        metrics = metrics_by_task[task]
        matrix = np.asarray(metrics["test"]["confusion_matrix"], dtype=float)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        names = _class_labels(metrics, matrix.shape[0])
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, f"{int(matrix[i, j])}\n{100 * shares[i, j]:.0f} %",
                        ha="center", va="center",
                        color="white" if shares[i, j] > 0.6 else "black",
                        **({"fontsize": 7} if len(names) > 2 else {}))
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(task, loc="left")
        ax.spines[:].set_visible(False)
    fig.tight_layout()
    return fig


def _class_labels(metrics: Mapping, n_classes: int) -> list[str]:
    """Axis labels of a confusion matrix: the class names of a task with a class list,
    the conditions of each side of a two-class one."""
    if metrics.get("classes"):
        return [str(c["name"]) for c in metrics["classes"]]
    if n_classes == 2:
        return ["+".join(metrics.get("negative") or ["0"]),
                "+".join(metrics.get("positive") or ["1"])]
    return [str(k) for k in range(n_classes)]


def class_colour(label: int) -> str:
    """The colour of class ``label``: the two class colours, then matplotlib's cycle."""
    if label < len(CLASS_COLOURS):
        return CLASS_COLOURS[label]
    return plt.rcParams["axes.prop_cycle"].by_key()["color"][label % 10]


def roc_curves_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None]]) -> Figure:
    """Test-set ROC curve of every task in one panel; ``curves``: task -> (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--", label="chance")
    cmap = plt.get_cmap(CONDITION_CMAP)
    for index, (task, (fpr, tpr, auc)) in enumerate(curves.items()):
        label = task if auc is None else f"{task} (AUC {auc:.3f})"
        ax.step(fpr, tpr, where="post", color=cmap(index % 10), label=label)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def per_donor_figure(per_donor: Mapping[str, pd.DataFrame]) -> Figure:
    """Accuracy per donor and task, coloured by split; clip counts above the bars."""
    tasks = [t for t, frame in per_donor.items() if len(frame)]
    rows, columns = _grid(len(tasks), max_columns=2)
    fig, axes = plt.subplots(rows, columns, figsize=(5.4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        frame = per_donor[task].copy()
        frame["_order"] = frame["split"].map({s: i for i, s in enumerate(SPLIT_COLOURS)})
        frame = frame.sort_values(["_order", "donor"]).reset_index(drop=True)
        x = np.arange(len(frame))
        colours = [SPLIT_COLOURS.get(s, "#888888") for s in frame["split"]]
        ax.bar(x, frame["accuracy"], color=colours, width=0.75)
        for xi, (acc, n) in enumerate(zip(frame["accuracy"], frame["n_clips"], strict=True)):
            ax.text(xi, acc + 0.02, str(int(n)), ha="center", va="bottom", fontsize=7,
                    color="#555555")
        ax.set_xticks(x, frame["donor"].astype(str), rotation=90 if len(x) > 12 else 0)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("accuracy")
        ax.set_title(task, loc="left")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SPLIT_COLOURS.values()]
    fig.legend(handles, list(SPLIT_COLOURS), loc="upper right", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def superimpose(frames: np.ndarray, reference: np.ndarray | float) -> np.ndarray:
    """Superimpose frames: at each pixel, the value farthest from the background.

    Works for cells darker or brighter than the background, where a minimum (or
    maximum) projection would show only one kind.
    """
    frames = np.asarray(frames, dtype=np.float32)
    deviation = np.abs(frames - reference)
    index = np.argmax(deviation, axis=0)
    return np.take_along_axis(frames, index[None], axis=0)[0]


def pipeline_figure(
    frames: Mapping[int, np.ndarray],
    background: np.ndarray,
    mask: np.ndarray,
    detections: pd.DataFrame,
    rule: str,
    title: str,
) -> Figure:
    """Seed 000 Fig. 2A-C plus the tracks: overlay, foreground mask, subtraction, tracks.

    ``frames`` maps frame numbers to grey images; the middle one is the one whose
    foreground ``mask`` (the detector's, ``rbcflow.segment.foreground_at``) is shown, and
    the one subtracted. ``rule`` describes the mask; ``detections`` (frame, track_id, x, y)
    are drawn as paths.
    """
    numbers = sorted(frames)
    stack = np.stack([frames[n] for n in numbers]).astype(np.float32)
    middle = frames[numbers[len(numbers) // 2]].astype(np.float32)
    overlay = superimpose(stack, background)
    subtracted = middle - background
    height, width = background.shape
    wide = width > 1.6 * height
    shape = (4, 1) if wide else (2, 2)
    panel_w = 9.0 if wide else 4.2
    panel_h = panel_w * height / width
    fig, axes = plt.subplots(*shape, figsize=(panel_w * shape[1], (panel_h + 0.45) * shape[0]))
    axes = axes.ravel()
    limit = max(float(np.percentile(np.abs(subtracted), 99.5)), 1.0)
    axes[0].imshow(overlay, cmap="gray", interpolation="nearest")
    axes[0].set_title(f"A  {len(numbers)} frames superimposed ({numbers[0]}–{numbers[-1]})",
                      loc="left")
    axes[1].imshow(mask, cmap="gray", interpolation="nearest")
    axes[1].set_title(f"B  foreground mask, frame {numbers[len(numbers) // 2]} ({rule})",
                      loc="left")
    axes[2].imshow(subtracted, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes[2].set_title("C  frame minus background", loc="left")
    axes[3].imshow(overlay, cmap="gray", interpolation="nearest")
    kept = detections[detections["track_id"] >= 0]
    cmap = plt.get_cmap(CONDITION_CMAP)
    for index, (track, points) in enumerate(kept.groupby("track_id", sort=True)):
        points = points.sort_values("frame")
        axes[3].plot(points["x"], points["y"], "-o", ms=2.5, lw=1.2, color=cmap(index % 10))
        axes[3].text(points["x"].iloc[-1] + 2, points["y"].iloc[-1], str(int(track)),
                     color=cmap(index % 10), fontsize=7, va="center")
    loose = detections[detections["track_id"] < 0]
    if len(loose):
        axes[3].plot(loose["x"], loose["y"], "x", ms=3, color="#999999")
    axes[3].set_title(f"D  tracks ({kept['track_id'].nunique()}) and untracked detections "
                      f"({len(loose)})", loc="left")
    for ax in axes:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout()
    return fig


def example_clips_figure(
    examples: Mapping[str, Sequence[tuple[np.ndarray, str]]],
    row_labels: Mapping[str, str] | None = None,
) -> Figure:
    """Seed 000 Fig. 4: superimposed frames of example clips, one row per condition.

    ``examples``: condition -> list of (clip (T, H, W) uint8, caption).
    """
    conditions = [c for c, items in examples.items() if items]
    columns = max(len(examples[c]) for c in conditions)
    fig, axes = plt.subplots(len(conditions), columns,
                             figsize=(1.9 * columns + 1.6, 2.1 * len(conditions)),
                             squeeze=False)
    for row, condition in enumerate(conditions):
        for column in range(columns):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if column >= len(examples[condition]):
                ax.set_visible(False)
                continue
            clip, caption = examples[condition][column]
            clip = np.asarray(clip, dtype=np.float32)
            border = np.concatenate([clip[:, 0, :].ravel(), clip[:, -1, :].ravel(),
                                     clip[:, :, 0].ravel(), clip[:, :, -1].ravel()])
            ax.imshow(superimpose(clip, float(np.median(border))), cmap="gray", vmin=0,
                      vmax=255, interpolation="nearest")
            ax.set_title(caption, fontsize=7)
        label = (row_labels or {}).get(condition, condition)
        axes[row, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center",
                                labelpad=8)
    fig.tight_layout()
    return fig


def confounder_figure(clips: pd.DataFrame, tasks: Sequence[Mapping]) -> Figure:
    """Seed 000 Fig. 5 per task: distance from the centre line against distance of flight."""
    from rbcflow.config import task_classes
    from rbcflow.report.tables import task_labels

    rows, columns = _grid(len(tasks))
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.1 * rows), squeeze=False,
                             sharex=True, sharey=True)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        labels = task_labels(clips, task)
        for value, spec in enumerate(task_classes(task)):
            colour, names = class_colour(value), spec["conditions"]
            subset = clips[labels == value]
            ax.scatter(subset["flight_distance_px"], subset["centerline_distance_um"], s=9,
                       alpha=0.6, color=colour, edgecolors="none",
                       label=f"{'+'.join(names)} (n={len(subset)})")
        ax.set_title(task["name"], loc="left")
        ax.legend(loc="upper right", frameon=False, markerscale=1.5)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("distance of flight (px)")
    for ax in axes[:, 0]:
        ax.set_ylabel("distance from centre line (µm)")
    fig.tight_layout()
    return fig


def saliency_figure(
    examples: Mapping[str, tuple[np.ndarray, Sequence[str]]], n_times: int = 6,
) -> Figure:
    """Example test clips and their Grad-CAM maps over time, one row per clip.

    ``examples``: row group (a task, with its model) -> (layers, captions), ``layers``
    the (n, 3, T, H, W) clips, maps and cell masks of ``saliency.npy``, ``captions`` one
    per clip. Each row shows ``n_times`` frames spread over the clip: the grey frame with
    the map over it (red: high saliency) and the estimated cell outline (cyan).
    """
    rows = [(group, i) for group, (layers, _) in examples.items() for i in range(len(layers))]
    n_frames = max(layers.shape[2] for layers, _ in examples.values())
    columns = min(n_times, n_frames)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.15 * columns + 2.2, 1.25 * len(rows)),
                             squeeze=False)
    for r, (group, i) in enumerate(rows):
        layers, captions = examples[group]
        clip, cam, mask = layers[i]
        times = np.unique(np.round(np.linspace(0, len(clip) - 1, columns)).astype(int))
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if c >= len(times):
                ax.set_visible(False)
                continue
            t = times[c]
            ax.imshow(clip[t], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.imshow(np.ma.masked_less(cam[t], 0.05), cmap="Reds", vmin=0, vmax=1, alpha=0.55,
                      interpolation="nearest")
            if mask[t].any() and not mask[t].all():
                ax.contour(mask[t], levels=[0.5], colors="c", linewidths=0.6)
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=7)
        caption = captions[i] if i < len(captions) else ""
        axes[r, 0].set_ylabel(f"{group}\n{caption}", fontsize=7, rotation=0, ha="right",
                              va="center", labelpad=6)
    fig.tight_layout()
    return fig
