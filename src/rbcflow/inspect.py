"""``rbcflow inspect``: one recording as the chain sees it, to set up a new microscope.

:func:`inspect_recording` runs the per-recording chain (``rbcflow.preprocess``, which
streams the video) with the given config into ``<out>/run`` and writes, beside it, one
self-contained HTML page (``index.html``, images inline) and its figures as PNG:

- ``overlay.png``: the frames with the most detections, each blob's box drawn and
  labelled with its track ID, coloured by the track's verdict;
- ``noise.png``: histogram of background-subtracted pixels (the background's sample
  frames, as measured for ``threshold: auto``) with the threshold in use and the
  suggested one;
- ``areas.png``: blob areas (um^2) against the expected cell area;
- ``config_snippet.yaml``: the suggested detection settings, from a robust noise
  estimate (``detect.threshold_k`` x the noise sigma), the polarity chosen and the cells'
  measured size;

with the QC verdict and its flagged signs (``rbcflow.qc``). Only the overlay frames are
read again, by index.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from rbcflow.io.atomic import atomic_path, write_text_atomic

#: Frames shown in the overlay figure.
OVERLAY_FRAMES = 4
#: Box colour (BGR) per track status; detections of no track are grey.
STATUS_COLOURS = {"kept": (60, 170, 60), "too_short": (0, 190, 230),
                  "collision": (40, 40, 220), "touches_border": (200, 120, 40)}
_OTHER = (150, 150, 150)


def _quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def mad_sigma(counts: np.ndarray, centres: np.ndarray, quantum: float = 1.0) -> float:
    """1.4826 x the median absolute deviation of a histogram (``counts`` at ``centres``).

    Frames hold whole grey levels, so the differences pile up on a few values and a plain
    MAD jumps from one of them to the next (1.48 for any noise between about 1.2 and 1.8).
    Each count is therefore spread evenly over the ``quantum`` (one grey level) around its
    value, the rounding the camera applied, before the median and the MAD are read off.
    """
    counts = np.asarray(counts, np.float64)
    if counts.sum() <= 0:
        raise ValueError("empty histogram")
    steps = 21  # odd: the spreading box is centred on each value
    step = quantum / (steps - 1)
    fine = np.arange(centres[0] - quantum, centres[-1] + quantum + step / 2, step)
    mass = np.zeros(len(fine))
    np.add.at(mass, np.rint((centres - fine[0]) / step).astype(np.int64), counts)
    mass = np.convolve(mass, np.ones(steps) / steps, mode="same")
    centre = _quantile(fine, mass, 0.5)
    return 1.4826 * _quantile(np.abs(fine - centre), mass, 0.5)


def suggested_settings(noise_sigma: float, k: float, minimum: float, polarity: str,
                       areas_um2: np.ndarray) -> dict[str, object]:
    """Detection settings a fixed config would use for this recording.

    ``threshold``: ``k`` x the noise sigma (``rbcflow.calibrate``), at least ``minimum``,
    rounded to a tenth; ``polarity``: the one in use; ``cell_diameter_um``: the diameter
    of a disc of the median blob area (when there are blobs).
    """
    settings: dict[str, object] = {
        "threshold": round(max(k * noise_sigma, minimum), 1), "polarity": polarity}
    if len(areas_um2):
        settings["cell_diameter_um"] = round(2 * math.sqrt(float(np.median(areas_um2))
                                                           / math.pi), 2)
    return settings


def config_snippet(settings: Mapping[str, object], noise_sigma: float, k: float) -> str:
    """The settings as a ``detect:`` section of a config file (YAML)."""
    lines = [f"# suggested by rbcflow inspect: noise sigma {noise_sigma:.2f} grey "
             f"levels, threshold = {k:g} x sigma", "detect:"]
    lines += [f"  {key}: {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def overlay_frames(table: pd.DataFrame, n: int = OVERLAY_FRAMES) -> list[int]:
    """The ``n`` frames with the most detections (earliest first among equals), sorted."""
    if table.empty:
        return [0]
    counts = table.groupby("frame").size()
    busiest = counts.sort_index().sort_values(ascending=False, kind="stable")
    return sorted(int(f) for f in busiest.index[:n])


def draw_detections(frame: np.ndarray, detections: pd.DataFrame,
                    status: Mapping[int, str]) -> np.ndarray:
    """The frame in colour with each detection's box and its track ID."""
    image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for row in detections.itertuples():
        colour = STATUS_COLOURS.get(status.get(int(row.track_id), ""), _OTHER)
        x, y, w, h = (int(round(v)) for v in (row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h))
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, 1)
        label = str(int(row.track_id)) if row.track_id >= 0 else "-"
        cv2.putText(image, label, (x, max(y - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour,
                    1, cv2.LINE_AA)
    return image


def _png(image: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{path}: cannot write PNG")


def _overlay(video: Path, table: pd.DataFrame, status: Mapping[int, str], path: Path
             ) -> list[int]:
    from rbcflow.io.video import open_video

    wanted = overlay_frames(table)
    panels = []
    with open_video(video) as reader:
        for index, frame in reader.frames(0, max(wanted) + 1, only=set(wanted)):
            if index not in wanted:
                continue
            image = draw_detections(frame, table[table["frame"] == index], status)
            bar = np.full((16, image.shape[1], 3), 255, np.uint8)
            cv2.putText(bar, f"frame {index}", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
            panels.extend([bar, image])
    _png(np.vstack(panels), path)
    return wanted


def _histograms(centres, counts, threshold, suggested, polarity, areas_um2, expected_um2,
                noise_png: Path, areas_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbcflow.report.figures import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    shown = counts > 0
    ax.semilogy(centres[shown], counts[shown], drawstyle="steps-mid", color="#2b6cb0")
    for sign in ((-1, 1) if polarity == "absolute" else (-1,) if polarity == "dark" else (1,)):
        ax.axvline(sign * threshold, color="#c53030", label="threshold in use"
                   if sign == -1 or polarity == "bright" else None)
        ax.axvline(sign * suggested, color="#2f855a", ls="--", label="suggested"
                   if sign == -1 or polarity == "bright" else None)
    ax.set_xlabel("frame - background (grey levels)")
    ax.set_ylabel("pixels")
    ax.set_xlim(-max(4 * threshold, 10), max(4 * threshold, 10))
    ax.legend()
    save_figure(fig, noise_png)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    if len(areas_um2):
        ax.hist(areas_um2, bins=min(60, max(10, len(areas_um2) // 5)), color="#5f6b7a")
    ax.axvline(expected_um2, color="#c53030", label=f"expected cell ({expected_um2:.0f} um²)")
    ax.set_xlabel("blob area (um²)")
    ax.set_ylabel("detections")
    ax.legend()
    save_figure(fig, areas_png)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _page(sample: str, video: Path, qc: Mapping, snippet: str, figures: Mapping[str, Path],
          facts: Mapping[str, object]) -> str:
    from rbcflow.report.html import CSS

    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in facts.items())
    flagged = "".join(
        f"<tr><td class='text'>{html.escape(str(f['sign']))}</td><td>{html.escape(str(f['value']))}"
        f"</td><td class='text'>{html.escape(str(f['limit']))}</td>"
        f"<td class='text'>{html.escape(str(f['parameter']))}</td></tr>" for f in qc["flagged"])
    badge = "ok" if qc["verdict"] == "ok" else "bad"
    signs = (f"<table><tr><th class='text'>sign</th><th>value</th><th class='text'>limit</th>"
             f"<th class='text'>change</th></tr>{flagged}</table>" if flagged
             else "<p>No sign beyond its limit.</p>")
    captions = {
        "overlay": "Frames with the most detections; boxes coloured by track verdict (green "
                   "kept, yellow too short, red collision, blue touches the border), labels "
                   "are track IDs.",
        "noise": "Background-subtracted pixels of the background's sample frames, with the "
                 "threshold in use (red) and the suggested one (green, dashed).",
        "areas": "Areas of every detection against the expected cell area "
                 "(detect.cell_diameter_um).",
    }
    body = "".join(f"<figure>{_img(path)}<figcaption>{html.escape(captions[name])}"
                   f"</figcaption></figure>" for name, path in figures.items())
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>rbcflow "
            f"inspect: {html.escape(sample)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{html.escape(sample)}</h1><div class='meta'>{html.escape(str(video))}"
            f"</div></header><h2>QC verdict: <span class='badge {badge}'>"
            f"{html.escape(qc['verdict'])}</span></h2>{signs}<h2>Recording</h2>"
            f"<table class='kv'>{rows}</table><h2>Suggested settings</h2>"
            f"<pre>{html.escape(snippet)}</pre><h2>Figures</h2>{body}</main></body></html>\n")


def _units(video: Path, um_per_px: float | None, fps: float | None) -> tuple[float, float]:
    from rbcflow.io.video import VideoError, open_video

    with open_video(video) as reader:
        um_per_px = um_per_px or getattr(reader, "um_per_px", None)
        fps = fps or reader.fps
    if not um_per_px:
        raise VideoError(f"{video}: the file states no pixel size; pass --um-per-px")
    if not fps:
        raise VideoError(f"{video}: the file states no frame rate; pass --fps")
    return float(um_per_px), float(fps)


def _histogram_at_blur(noise: Mapping, blur_sigma: float) -> np.ndarray:
    """The background's difference histogram at the blur the detection used."""
    from rbcflow import calibrate

    for record in noise.get("blurred", []):
        if float(record["blur_sigma"]) == float(blur_sigma):
            return calibrate.histogram_of(record)
    return calibrate.histogram_of(noise)


def inspect_recording(video: str | Path, out: str | Path, config: Mapping | None = None,
                      um_per_px: float | None = None, fps: float | None = None,
                      sample: str | None = None) -> dict[str, Path]:
    """Run the chain on one recording and write the inspection page; the paths by role.

    ``um_per_px`` and ``fps`` default to what the file states (RT-DC files state both).
    """
    from rbcflow import calibrate
    from rbcflow.background import load_background
    from rbcflow.params import resolve_chain_params
    from rbcflow.preprocess import preprocess_video, sample_name
    from rbcflow.track import read_summary, read_tracks

    video, out = Path(video), Path(out)
    config = dict(config or {})
    um_per_px, fps = _units(video, um_per_px, fps)
    sample = sample or sample_name(video)
    paths = preprocess_video(video, out / "run", config,
                             {"sample": sample, "fps": fps, "um_per_px": um_per_px})
    model = load_background(paths["background"])
    params = resolve_chain_params(config, fps, um_per_px).calibrated(model)
    detect = params.detect
    table, _ = read_tracks(paths["tracks"])
    summary = read_summary(paths["tracks_summary"])
    status = dict(zip(summary["track_id"].astype(int), summary["status"], strict=True))
    record = json.loads(paths["qc"].read_text(encoding="utf-8"))
    counts = _histogram_at_blur(model.params["noise"], detect.blur_sigma)
    centres = calibrate.bin_centres()
    sigma_mad = mad_sigma(counts, centres)
    areas_um2 = table["area_px"].to_numpy(np.float64) * um_per_px**2
    # the suggestion is what threshold auto chose (the chain's estimator), so pinning it
    # reproduces this run; the MAD-sigma is shown beside it as a second opinion
    settings = suggested_settings(float(detect.noise_sigma), detect.threshold_k,
                                  detect.threshold_min, detect.polarity, areas_um2)
    settings["blur_sigma"] = detect.blur_sigma  # the noise was measured at this blur
    snippet = config_snippet(settings, float(detect.noise_sigma), detect.threshold_k)
    result = {"html": out / "index.html", "overlay": out / "overlay.png",
              "noise": out / "noise.png", "areas": out / "areas.png",
              "config_snippet": out / "config_snippet.yaml", **{f"run_{k}": v
                                                                for k, v in paths.items()}}
    shown = _overlay(video, table, status, result["overlay"])
    expected_um2 = math.pi / 4 * (detect.cell_diameter_px * um_per_px) ** 2
    _histograms(centres, counts, float(detect.threshold), float(settings["threshold"]),
                detect.polarity, areas_um2, expected_um2, result["noise"], result["areas"])
    write_text_atomic(result["config_snippet"], snippet)
    facts = {"frames": record["n_frames"], "pixel size (um)": um_per_px, "frame rate (Hz)": fps,
             "noise sigma (chain, grey levels)": detect.noise_sigma,
             "noise MAD-sigma (grey levels)": round(sigma_mad, 3),
             "threshold in use": detect.threshold, "polarity in use": detect.polarity,
             "detections": record["n_detections"], "tracks by verdict": record["tracks"],
             "frames shown": ", ".join(map(str, shown)),
             "chain outputs": str(out / "run")}
    figures = {name: result[name] for name in ("overlay", "noise", "areas")}
    write_text_atomic(result["html"], _page(sample, video, record["qc"], snippet, figures,
                                            facts))
    return result
