"""Applying a trained model to new recordings: per-cell classes and each sample's composition.

:func:`predict_samples` takes a model folder with its bundle (``rbcflow.bundle``) and
inputs that are recordings (any format ``rbcflow.io.video.open_video`` reads), sample
sheets (their ``condition`` may be empty) or clip files. Recordings go through the same
per-recording chain as the training data (``rbcflow.preprocess.preprocess_video``), with
the parameters the model was trained on; a clip file is refused when it was cut with
other parameters, naming them. It writes into ``OUT``:

- ``cells.tsv``: ``sample``, ``track_id``, ``first_frame``, ``last_frame``, one
  ``p_<class>`` per class, ``predicted`` (a class name);
- ``samples.tsv``: ``sample``, ``condition`` (as the sheet gives it, may be empty),
  ``n_cells``, and per class ``fraction_<class>`` (share of cells predicted as it, with
  ``fraction_<class>_ci_low/high``) and ``adjusted_<class>`` (corrected for the test
  confusion matrix, ``rbcflow.composition``) with ``adjusted_<class>_ci_low/high``;
- ``index.html``: one self-contained page (composition per sample, probability
  histogram, example clips of each predicted class);
- ``preprocess/``: the chain's files of every recording (tracks, clips, QC).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rbcflow.bundle import Bundle, load_bundle
from rbcflow.composition import bootstrap_composition, correctable

log = logging.getLogger(__name__)

CELL_COLUMNS = ["sample", "track_id", "first_frame", "last_frame"]
SHEET_SUFFIXES = (".tsv",)
CLIP_SUFFIXES = (".h5",)
#: A classifier: clips (n, T, H, W) uint8 and their clip-table rows -> (n, K) probabilities.
Classifier = Callable[[np.ndarray, pd.DataFrame], np.ndarray]


UNCORRECTABLE = (
    "the model's test confusion matrix cannot correct the composition (on its test set "
    "its predictions carried no information about the class: sensitivity + specificity "
    "<= 1, a singular matrix, or a class without test clips); the adjusted shares are "
    "left empty")


class PredictError(ValueError):
    """An input cannot be predicted (unknown units, duplicate sample, unreadable)."""


@dataclass
class PredictInput:
    """One sample to predict: a recording (``row`` is its sample-sheet row) or clip file."""

    sample: str
    kind: str  # "recording" or "clips"
    path: Path
    row: dict = field(default_factory=dict)


def predict_tasks(predict_config: Mapping[str, Any], tasks: Sequence[str]) -> list[str]:
    """Tasks the workflow's ``predict`` block applies (none without its sample sheet)."""
    if not predict_config.get("samples"):
        return []
    wanted = list(predict_config.get("tasks") or tasks)
    unknown = [t for t in wanted if t not in tasks]
    if unknown:
        raise PredictError(f"predict.tasks: {unknown} are not tasks of the config "
                           f"({', '.join(tasks)})")
    return wanted


def read_predict_sheet(path: str | Path) -> pd.DataFrame:
    """A sample sheet of recordings to predict: the usual columns, ``condition`` may be
    empty and need not be a configured condition."""
    from rbcflow.config import ConfigError, load_sample_sheet

    try:
        return load_sample_sheet(path, conditions=None)
    except ConfigError as exc:
        raise PredictError(str(exc)) from None


def _training_units(bundle: Bundle) -> list[tuple[float, float]]:
    return [(float(s["units"]["fps"]), float(s["units"]["um_per_px"]))
            for s in bundle.record.get("trained_on", [])]


def recording_units(bundle: Bundle, path: Path, fps: float | None,
                    um_per_px: float | None) -> tuple[float, float]:
    """Frame rate and pixel size of a bare recording: given, from the file, or the model's.

    The frame rate comes from ``fps`` or the file's header. A pixel size not given is
    the file's own (RT-DC files carry it), else that of the training recordings with
    this frame rate when they all had one (a warning says so), else an error.
    """
    from rbcflow.io.video import open_video

    with open_video(path) as reader:
        fps = fps or reader.fps
        um_per_px = um_per_px or getattr(reader, "um_per_px", None)
    if not fps:
        raise PredictError(f"{path}: the file declares no frame rate; pass --fps")
    if um_per_px:
        return float(fps), float(um_per_px)
    sizes = sorted({um for f, um in _training_units(bundle) if abs(f - fps) < 1e-6 * fps})
    if len(sizes) != 1:
        known = ", ".join(f"{um} um/px at {f:g} fps" for f, um in _training_units(bundle))
        raise PredictError(f"{path}: pixel size unknown; pass --um-per-px (the model was "
                           f"trained on {known or 'unknown units'})")
    log.warning("%s: no pixel size given; using %g um/px, that of the training recordings "
                "at %g fps (pass --um-per-px if this camera differs)", path, sizes[0], fps)
    return float(fps), sizes[0]


def gather_inputs(bundle: Bundle, inputs: Sequence[str | Path], fps: float | None = None,
                  um_per_px: float | None = None) -> list[PredictInput]:
    """Expand sheets into their recordings; name recordings and clip files; no duplicates."""
    from rbcflow.preprocess import sample_name

    items: list[PredictInput] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise PredictError(f"{path}: no such file or folder")
        suffix = path.suffix.lower() if path.is_file() else ""
        if suffix in SHEET_SUFFIXES:
            sheet = read_predict_sheet(path)
            for _, row in sheet.iterrows():
                record = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                items.append(PredictInput(str(row["sample"]), "recording", Path(row["path"]),
                                          record))
        elif suffix in CLIP_SUFFIXES:
            items.append(PredictInput(sample_name(path), "clips", path))
        else:
            rate, size = recording_units(bundle, path, fps, um_per_px)
            items.append(PredictInput(sample_name(path), "recording", path,
                                      {"sample": sample_name(path), "path": str(path),
                                       "fps": rate, "um_per_px": size, "condition": ""}))
    names = [item.sample for item in items]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise PredictError(f"sample name(s) {duplicated} occur more than once among the "
                           "inputs; give the recordings distinct names (a sample sheet)")
    return items


def keras_classifier(model, batch_size: int = 64) -> Classifier:
    """The bundle's model as a :data:`Classifier` (clips as stored, grey values 0..255)."""

    def classify(clips: np.ndarray, table: pd.DataFrame) -> np.ndarray:
        out = []
        for start in range(0, len(clips), batch_size):
            batch = clips[start:start + batch_size].astype(np.float32)[..., None]
            out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float64))
        return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])))

    return classify


def clip_file_of(bundle: Bundle, item: PredictInput, workdir: Path, progress: bool) -> Path:
    """The input's clip file: cut by the chain with the model's parameters, or checked."""
    from rbcflow.preprocess import preprocess_video

    if item.kind == "clips":
        bundle.check_clip_file(item.path)
        return item.path
    row = {k: v for k, v in item.row.items() if k not in ("path", "truth")}
    # the chain records the sheet's condition in the clip table; unknown stays unknown
    row["condition"] = row.get("condition") or "unknown"
    paths = preprocess_video(item.path, workdir, bundle.chain, row, progress=progress)
    return paths["clips"]


def classify_clip_file(path: Path, classify: Classifier, n_classes: int,
                       batch_size: int = 256) -> tuple[pd.DataFrame, np.ndarray]:
    """The clip table of a file and each clip's class probabilities."""
    from rbcflow.clipstore import read_clip_table
    from rbcflow.dataset import ClipFile

    table = read_clip_table(path)
    probabilities = np.zeros((len(table), n_classes))
    if len(table):
        source = ClipFile(path)
        try:
            for start in range(0, len(table), batch_size):
                rows = np.arange(start, min(start + batch_size, len(table)))
                probabilities[rows] = classify(source.read(rows), table.iloc[rows])
        finally:
            source.close()
    return table, probabilities


def cell_table(sample: str, table: pd.DataFrame, probabilities: np.ndarray,
               class_names: Sequence[str]) -> pd.DataFrame:
    """``cells.tsv`` rows of one sample."""
    cells = pd.DataFrame({
        "sample": sample,
        "track_id": table["track_id"].to_numpy(dtype=np.int64) if len(table) else [],
        "first_frame": table["first_frame"].to_numpy(dtype=np.int64) if len(table) else [],
        "last_frame": table["last_frame"].to_numpy(dtype=np.int64) if len(table) else [],
    })
    for k, name in enumerate(class_names):
        cells[f"p_{name}"] = probabilities[:, k] if len(table) else []
    predicted = probabilities.argmax(axis=1) if len(table) else np.zeros(0, dtype=int)
    cells["predicted"] = [class_names[k] for k in predicted]
    return cells


def sample_row(sample: str, condition: str, predicted: np.ndarray, bundle: Bundle,
               n_boot: int, seed: int) -> dict[str, Any]:
    """``samples.tsv`` row of one sample (class indices of its cells -> composition)."""
    rng_seed = np.random.SeedSequence([seed, zlib.crc32(sample.encode())])
    result = bootstrap_composition(predicted, bundle.confusion, n_boot, rng_seed)
    row: dict[str, Any] = {"sample": sample, "condition": condition, "n_cells": result.n_cells}
    for k, name in enumerate(bundle.class_names):
        row[f"fraction_{name}"] = result.observed[k]
        row[f"fraction_{name}_ci_low"] = result.observed_low[k]
        row[f"fraction_{name}_ci_high"] = result.observed_high[k]
        row[f"adjusted_{name}"] = result.adjusted[k]
        row[f"adjusted_{name}_ci_low"] = result.adjusted_low[k]
        row[f"adjusted_{name}_ci_high"] = result.adjusted_high[k]
    return row


def _examples(clip_path: Path, cells: pd.DataFrame, per_class: int, seed: int,
              class_names: Sequence[str]) -> dict[str, list[tuple[np.ndarray, str]]]:
    """A few clips of each predicted class, drawn with ``seed``, with their captions."""
    from rbcflow.clipstore import read_clips

    out: dict[str, list[tuple[np.ndarray, str]]] = {}
    rng = np.random.default_rng(seed)
    for name in class_names:
        rows = np.flatnonzero(cells["predicted"].to_numpy() == name)
        if not rows.size:
            continue
        chosen = np.sort(rng.choice(rows, size=min(per_class, rows.size), replace=False))
        clips = read_clips(clip_path, chosen)
        out[name] = [(clips[i], f"{cells['sample'].iloc[r]} #{cells['track_id'].iloc[r]} "
                                f"p={cells[f'p_{name}'].iloc[r]:.2f}")
                     for i, r in enumerate(chosen)]
    return out


def predict_samples(
    model_dir: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    n_boot: int,
    seed: int,
    example_clips: int,
    fps: float | None = None,
    um_per_px: float | None = None,
    progress: bool = False,
    classify: Classifier | None = None,
    bundle: Bundle | None = None,
    preprocess_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Classify every cell of the inputs and estimate each sample's composition.

    Parameters
    ----------
    model_dir : a model folder with ``bundle.json`` and the model it names.
    inputs : recordings, sample sheets (``.tsv``) and clip files (``.h5``).
    out_dir : receives ``cells.tsv``, ``samples.tsv``, ``index.html`` and ``preprocess/``.
    n_boot, seed : bootstrap replicates of the composition intervals and their seed
        (the config's ``predict.bootstrap`` and ``seed``).
    example_clips : clips shown per predicted class in ``index.html``
        (``predict.example_clips``).
    fps, um_per_px : units of bare recordings (see :func:`recording_units`).
    progress : progress bars (recordings, frames).
    classify : a :data:`Classifier` instead of the bundle's model (a stand-in with known
        errors, for checking the composition estimates).
    bundle : an already loaded bundle instead of ``model_dir``'s.
    preprocess_dir : where the chain writes the recordings' files (default
        ``out_dir/preprocess``).

    Returns
    -------
    Paths of ``cells``, ``samples`` and ``html``.
    """
    from tqdm import tqdm

    from rbcflow.io.atomic import write_text_atomic

    bundle = bundle or load_bundle(model_dir)
    out_dir = Path(out_dir)
    workdir = Path(preprocess_dir) if preprocess_dir is not None else out_dir / "preprocess"
    workdir.mkdir(parents=True, exist_ok=True)
    items = gather_inputs(bundle, inputs, fps, um_per_px)
    start = time.perf_counter()
    if classify is None:
        classify = keras_classifier(bundle.load_model())
    log.info("model of task %s loaded in %.1f s", bundle.task, time.perf_counter() - start)
    names = bundle.class_names
    if not correctable(bundle.confusion):
        log.warning("task %s: %s", bundle.task, UNCORRECTABLE)
    cell_parts, sample_rows, examples = [], [], {}
    for item in tqdm(items, desc=f"predict {bundle.task}", unit="sample",
                     disable=not progress):
        start = time.perf_counter()
        clip_path = clip_file_of(bundle, item, workdir, progress)
        chain_s = time.perf_counter() - start
        table, probabilities = classify_clip_file(clip_path, classify, len(names))
        classify_s = time.perf_counter() - start - chain_s
        cells = cell_table(item.sample, table, probabilities, names)
        if cells.empty:
            log.warning("%s: no cells found in %s (no kept track); its row has n_cells = 0",
                        item.sample, item.path)
        predicted = probabilities.argmax(axis=1) if len(cells) else np.zeros(0, dtype=int)
        condition = str(item.row.get("condition") or "")
        sample_rows.append(sample_row(item.sample, condition, predicted, bundle, n_boot, seed))
        cell_parts.append(cells)
        for name, clips in _examples(clip_path, cells, example_clips, seed, names).items():
            examples.setdefault(name, []).extend(clips)
        log.info("%s: %d cells (chain %.1f s, classification %.1f s); adjusted %s",
                 item.sample, len(cells), chain_s, classify_s, ", ".join(
                     f"{n} {sample_rows[-1][f'adjusted_{n}']:.3f}" for n in names))
    cells_all = pd.concat(cell_parts, ignore_index=True) if cell_parts else cell_table(
        "", pd.DataFrame(), np.zeros((0, len(names))), names)
    samples = pd.DataFrame(sample_rows)
    paths = {"cells": out_dir / "cells.tsv", "samples": out_dir / "samples.tsv",
             "html": out_dir / "index.html"}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths["cells"], cells_all.to_csv(sep="\t", index=False,
                                                       float_format="%.6g"))
    write_text_atomic(paths["samples"], samples.to_csv(sep="\t", index=False,
                                                       float_format="%.6g"))
    rng = np.random.default_rng(seed)
    shown = {name: [clips[i] for i in sorted(rng.choice(len(clips), min(example_clips,
                                                                          len(clips)),
                                                          replace=False))]
             for name, clips in examples.items()}
    write_text_atomic(paths["html"], prediction_page(bundle, samples, cells_all, shown))
    return paths


# ---- the page ---------------------------------------------------------------------------

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def composition_figure(samples: pd.DataFrame, class_names: Sequence[str]):
    """Adjusted share of each class per sample with its interval (observed as dots)."""
    plt = _pyplot()
    shown = samples[samples["n_cells"] > 0]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(shown), 1) * len(class_names)))
    y = 0.0
    ticks, labels = [], []
    for _, row in shown.iterrows():
        for k, name in enumerate(class_names):
            value = row[f"adjusted_{name}"]
            low, high = row[f"adjusted_{name}_ci_low"], row[f"adjusted_{name}_ci_high"]
            ax.barh(y, value, color=f"C{k}", height=0.8)
            ax.errorbar(value, y, xerr=[[value - low], [high - value]], color="black",
                        capsize=3, lw=1)
            ax.plot(row[f"fraction_{name}"], y, "o", color="white", mec="black", ms=4)
            ticks.append(y)
            labels.append(f"{row['sample']}: {name}")
            y += 1
        y += 0.5
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of cells (bar: adjusted with 95 % interval; dot: predicted)")
    if shown.empty:
        ax.text(0.5, 0.5, "no sample with cells", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def probability_figure(cells: pd.DataFrame, class_names: Sequence[str]):
    """Histogram of each class's probability over all cells (two classes: the second)."""
    plt = _pyplot()
    shown = class_names[1:] if len(class_names) == 2 else class_names
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 2.6), squeeze=False)
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes[0], shown, strict=True):
        for sample, part in cells.groupby("sample"):
            ax.hist(part[f"p_{name}"], bins=bins, histtype="step", label=str(sample))
        ax.set_xlabel(f"p_{name}")
        ax.set_ylabel("cells")
    if cells["sample"].nunique() <= 8 and len(cells):
        axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def examples_figure(examples: Mapping[str, list[tuple[np.ndarray, str]]]):
    """Middle frame of example clips, one row per predicted class."""
    plt = _pyplot()
    rows = [name for name, items in examples.items() if items]
    columns = max((len(examples[name]) for name in rows), default=1)
    fig, axes = plt.subplots(max(len(rows), 1), columns, squeeze=False,
                             figsize=(1.8 * columns + 1.2, 2.0 * max(len(rows), 1)))
    for ax in axes.ravel():
        ax.set_axis_off()
    for r, name in enumerate(rows):
        for c, (clip, caption) in enumerate(examples[name]):
            ax = axes[r, c]
            ax.imshow(clip[len(clip) // 2], cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_title(caption, fontsize=6)
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=9)
    fig.tight_layout()
    return fig


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="",
                         border=0, classes="data")


def prediction_page(bundle: Bundle, samples: pd.DataFrame, cells: pd.DataFrame,
                    examples: Mapping[str, list[tuple[np.ndarray, str]]]) -> str:
    """The self-contained ``index.html`` of a prediction run (figures as embedded PNGs)."""
    names = bundle.class_names
    classes = "; ".join(f"<b>{html.escape(n)}</b>: {html.escape(', '.join(c))}"
                        for n, c in bundle.conditions.items())
    confusion = pd.DataFrame(bundle.confusion, columns=[f"predicted {n}" for n in names])
    confusion.insert(0, "true class", names)
    empty = samples.loc[samples["n_cells"] == 0, "sample"].tolist()
    columns = ["sample", "condition", "n_cells"] + [
        f"{kind}_{n}{suffix}" for n in names for kind, suffix in
        (("fraction", ""), ("adjusted", ""), ("adjusted", "_ci_low"), ("adjusted", "_ci_high"))]
    figures = [("Composition per sample", composition_figure(samples, names)),
               ("Class probabilities of the cells", probability_figure(cells, names)),
               ("Example clips per predicted class (middle frame)", examples_figure(examples))]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>rbcflow predict: {html.escape(bundle.task)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table.data{border-collapse:collapse;font-size:0.85em}"
        "table.data td,table.data th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>Predictions of task {html.escape(bundle.task)}</h1>",
        f"<p>Classes: {classes}. Model: {html.escape(str(bundle.record['model']['architecture']))}"
        f" ({html.escape(bundle.record['model']['sha256'][:12])}). "
        f"{len(samples)} sample(s), {len(cells)} cell(s).</p>",
        "<p>The adjusted shares correct the predicted ones for the errors the model made on "
        "its test set (confusion matrix below; Rogan-Gladen for two classes, the inverse "
        "of the confusion matrix for more); intervals are 95 % bootstrap intervals over "
        "the sample's cells and the test set.</p>",
        "<h2>Composition</h2>", _html_table(samples[[c for c in columns if c in samples]]),
    ]
    if not correctable(bundle.confusion):
        parts.append(f"<p><b>No adjusted shares</b>: {html.escape(UNCORRECTABLE)}.</p>")
    if empty:
        parts.append(f"<p><b>No cells found</b> in {html.escape(', '.join(empty))}: no "
                     "track was kept (see preprocess/qc/ and the clip QC tables).</p>")
    for title, fig in figures:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{_png(fig)}'>")
    parts += ["<h2>Test confusion matrix of the model</h2>", _html_table(confusion),
              "<h2>Provenance</h2><pre>",
              html.escape(json.dumps({"bundle": str(bundle.directory / 'bundle.json'),
                                      "provenance": bundle.record.get("provenance")},
                                     indent=1)),
              "</pre></body></html>"]
    return "\n".join(parts) + "\n"
