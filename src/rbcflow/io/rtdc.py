"""Real-time deformability cytometry (RT-DC) ``.rtdc`` files: frames in, per-cell results out.

An ``.rtdc`` file is HDF5 (the format of dclab, Shape-In and DCscope). What matters here:

- ``events/<feature>``: one entry per event (a detected object), all of the same length.
  ``image`` is (N, H, W) uint8, ``image_bg`` the instrument's background for each event,
  ``mask`` its segmentation (0/255), ``frame`` the camera frame number (stored as float32
  by older software, uint64 by dclab), ``pos_x``/``pos_y`` the centroid in um,
  ``area_um``, ``deform``. Events are snapshots, usually far apart in time, and several
  events of one camera frame share its ``frame`` number and its image.
- root attributes ``section:key``: ``imaging:pixel size`` (um), ``imaging:frame rate``
  (Hz), ``imaging:roi size x|y`` (px), ``experiment:sample``, ``experiment:run index``,
  ``experiment:event count``, ``setup:*``, ``online_contour:*``, and a free ``user:*``
  section. String values may be stored as bytes.
- ``logs/<name>``: text, one fixed-length byte string per line (at most 100 characters
  a line, which dclab's checker expects).
- ``ml_score_xyz`` features (``xyz``: three of ``a-z0-9``) hold class probabilities in
  [0, 1]; dclab derives ``ml_class``, the index of the most probable score in the sorted
  list of score names, so the order of the codes, not of the classes, numbers the classes.

Positions: dclab's ``pos_x``/``pos_y`` are the centroid of the convex hull of the contour,
with pixel (0, 0)'s centre at the origin, times the pixel size. That is the convention of
:mod:`rbcflow.detect` too, so ``pos / pixel size`` is directly comparable to our ``x``/``y``.

Some datasets are compressed with Zstandard: :mod:`hdf5plugin` registers the filter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pandas as pd

from rbcflow import __version__
from rbcflow.io.atomic import atomic_path
from rbcflow.io.video import VideoError, VideoReader
from rbcflow.provenance import provenance_record

#: Images read per block while streaming (bytes): bounds memory whatever the file's size.
READ_BLOCK_BYTES = 64 << 20
#: float32 holds every integer up to 2**24 exactly; larger frame numbers may be rounded.
_FLOAT32_EXACT = 2**24
#: Frames whose events disagree that are named one by one in ``problems``.
_MAX_LISTED_MISMATCHES = 5
_LOG_LINE = 100
_ML_SCORE = re.compile(r"^ml_score_[a-z0-9]{3}$")
_CODE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _attr(attrs: h5py.AttributeManager, key: str) -> object | None:
    value = attrs.get(key)
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


class RtdcReader(VideoReader):
    """The event images of an ``.rtdc`` file, one image per distinct camera frame.

    Events are sorted by their ``frame`` number; events that share a frame number are
    one image (their images are compared and a difference is noted in ``problems``).
    Index ``k`` of :meth:`frames` is the ``k``-th distinct frame, and
    ``frame_numbers[k]`` its instrument frame number. Images are read in blocks of at
    most :data:`READ_BLOCK_BYTES`, so memory does not grow with the file.

    Attributes
    ----------
    um_per_px : float or None
        ``imaging:pixel size``.
    fps : float or None
        ``imaging:frame rate`` (the camera's; consecutive yielded frames are usually
        many camera frames apart, see ``frames_consecutive``).
    frame_numbers : ndarray of int64
        Instrument frame number of each yielded index, increasing.
    frames_consecutive : bool
        True when the frame numbers have no gaps (the file is a continuous video).
    n_events : int
        Events with an image.
    """

    reader = "rtdc"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._h5: h5py.File | None = None
        self._mismatches = 0
        try:
            # a larger chunk cache: an image chunk of an instrument file holds 2-10 MB
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=READ_BLOCK_BYTES)
            self._open(self._h5)
        except VideoError:
            self.close()
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            self.close()
            raise VideoError(f"{self.path}: cannot read as RT-DC (.rtdc) file ({exc})") from exc

    def _open(self, h5: h5py.File) -> None:
        events = h5.get("events")
        if not isinstance(events, h5py.Group):
            raise VideoError(f"{self.path}: no 'events' group (not an RT-DC file?)")
        image = events.get("image")
        if not isinstance(image, h5py.Dataset) or image.ndim != 3:
            raise VideoError(f"{self.path}: no (N, H, W) 'events/image' dataset")
        if image.dtype != np.uint8:
            raise VideoError(f"{self.path}: events/image is {image.dtype}, expected uint8")
        self._events, self._image = events, image
        self.n_events = int(image.shape[0])
        if self.n_events == 0:
            raise VideoError(f"{self.path}: zero frames (events/image is empty)")
        self.height, self.width = int(image.shape[1]), int(image.shape[2])
        self.dtype = str(image.dtype)
        size = _attr(h5.attrs, "imaging:pixel size")
        self.um_per_px = float(size) if size is not None and float(size) > 0 else None
        if self.um_per_px is None:
            self._note(f"{self.path}: no valid 'imaging:pixel size' attribute")
        rate = _attr(h5.attrs, "imaging:frame rate")
        self.fps = float(rate) if rate is not None and float(rate) > 0 else None
        self._group_events(self._frame_feature())
        self.n_frames_header = len(self.frame_numbers)
        self.frames_consecutive = bool(np.all(np.diff(self.frame_numbers) == 1))
        if not self.frames_consecutive:
            self._note(f"{self.path}: frame numbers have gaps: the events are separate "
                       "snapshots, not a continuous video")

    def _frame_feature(self) -> np.ndarray:
        """Instrument frame number of each event with an image (event order)."""
        if "frame" not in self._events:
            self._note(f"{self.path}: no 'frame' feature; each event is taken as its own frame")
            return np.arange(self.n_events, dtype=np.int64)
        stored = self._events["frame"]
        raw = stored[:]  # 8 bytes an event: small next to the images
        if len(raw) < self.n_events:
            raise VideoError(f"{self.path}: events/frame has {len(raw)} entries for "
                             f"{self.n_events} images")
        raw = raw[:self.n_events]
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)) or np.any(raw != np.rint(raw)):
                raise VideoError(f"{self.path}: events/frame holds non-integer values")
            if raw.dtype.itemsize <= 4 and float(np.max(np.abs(raw))) >= _FLOAT32_EXACT:
                self._note(f"{self.path}: frame numbers beyond 2**24 stored as float32 may "
                           "be rounded; distinct frames can appear as one")
        return raw.astype(np.int64)

    def _group_events(self, frames: np.ndarray) -> None:
        order = np.argsort(frames, kind="stable")
        ordered = frames[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.frame_numbers = ordered[starts]
        #: events of yielded index k: _order[_bounds[k]:_bounds[k + 1]], the first is shown
        self._order = order
        self._bounds = np.r_[starts, len(order)]
        counts = np.diff(self._bounds)
        self._event_index = np.empty(len(order), np.int64)
        self._event_index[order] = np.repeat(np.arange(len(starts)), counts)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def _wanted(self, start: int, stop: int | None, only: Container[int] | None) -> list[int]:
        end = self.n_frames_header if stop is None else min(stop, self.n_frames_header)
        return [k for k in range(max(start, 0), end) if only is None or k in only]

    def _blocks(self, dataset: h5py.Dataset, wanted: Sequence[int], with_duplicates: bool
                ) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
        """``(index, image, images of the other events of that frame)`` for ``wanted``.

        Reads one block of events at a time: a contiguous slab when the block's events
        lie close together, else just those events (h5py needs increasing indices). A
        block that cannot be read is read again event by event, so that the frames
        before a damaged chunk still come out; the damaged one raises ``OSError``.
        """
        per_block = max(1, READ_BLOCK_BYTES // max(1, self.width * self.height))
        for lo in range(0, len(wanted), per_block):
            block = wanted[lo:lo + per_block]
            groups = [self._order[self._bounds[k]:self._bounds[k + 1]] for k in block]
            if not with_duplicates:
                groups = [g[:1] for g in groups]
            try:
                images = _read_events(dataset, np.unique(np.concatenate(groups)))
            except OSError:
                images = None
            for k, group in zip(block, groups, strict=True):
                found = [images[int(e)] if images is not None else dataset[int(e)]
                         for e in group]
                yield k, found[0], found[1:]

    def frames(self, start: int = 0, stop: int | None = None,
               only: Container[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        wanted = self._wanted(start, stop, only)
        stream = self._blocks(self._image, wanted, with_duplicates=True)
        for position in range(len(wanted)):
            try:
                k, image, others = next(stream)
            except OSError as exc:  # a corrupt chunk (checksum, filter): the stream ends
                self._note(f"{self.path}: frame {wanted[position]} cannot be decoded ({exc})")
                return
            if any(not np.array_equal(image, other) for other in others):
                self._mismatch(k)
            yield k, image.copy()  # a copy: a kept frame must not keep its whole block

    def _mismatch(self, index: int) -> None:
        self._mismatches += 1
        if self._mismatches <= _MAX_LISTED_MISMATCHES:
            self._note(f"{self.path}: frame {index} (instrument frame "
                       f"{self.frame_numbers[index]}): its events' images differ; the first "
                       "event's image is used")
        else:
            self._note(f"{self.path}: more frames whose events' images differ")

    def instrument_background(self, start: int = 0, stop: int | None = None
                              ) -> np.ndarray | None:
        """The instrument's background (``events/image_bg``) of yielded frames, or None.

        Returns
        -------
        ndarray or None
            float32 (K, H, W): row ``i`` is the background of yielded index
            ``start + i`` (the first event of that frame), for ``start <= index < stop``.
            None when the file has no ``image_bg``. A whole file costs
            ``4 * H * W`` bytes a frame (80 x 250 px: 80 kB; ask for ranges when that
            is too much).
        """
        background = self._events.get("image_bg")
        if background is None:
            return None
        if background.shape[1:] != self._image.shape[1:] or len(background) < self.n_events:
            self._note(f"{self.path}: events/image_bg {background.shape} does not match "
                       f"events/image {self._image.shape}; not used")
            return None
        wanted = self._wanted(start, stop, None)
        out = np.empty((len(wanted), self.height, self.width), np.float32)
        try:
            for row, (_, image, _) in enumerate(self._blocks(background, wanted, False)):
                out[row] = image
        except OSError as exc:
            raise VideoError(f"{self.path}: events/image_bg cannot be decoded ({exc})") from exc
        return out

    def event_positions(self) -> pd.DataFrame:
        """The file's own events, in yielded-frame order.

        Returns
        -------
        DataFrame
            ``index`` (yielded frame index), ``frame`` (instrument frame number),
            ``event`` (position in the file), ``pos_x_px``, ``pos_y_px`` (centroid in
            pixels: ``pos_x / pixel size``, x to the right, y down, pixel (0, 0)'s
            centre at the origin), and ``area_um``, ``deform`` where the file has them.
        """
        if self.um_per_px is None:
            raise VideoError(f"{self.path}: no pixel size to convert positions with")
        missing = [name for name in ("pos_x", "pos_y") if name not in self._events]
        if missing:
            raise VideoError(f"{self.path}: no {', '.join(missing)} feature")
        n = self.n_events
        table = {"index": self._event_index, "frame": self.frame_numbers[self._event_index],
                 "event": np.arange(n)}
        for name, column in (("pos_x", "pos_x_px"), ("pos_y", "pos_y_px"),
                             ("area_um", "area_um"), ("deform", "deform")):
            if name not in self._events:
                continue
            values = np.asarray(self._events[name][:n], dtype=np.float64)
            if len(values) < n:
                raise VideoError(f"{self.path}: events/{name} has {len(values)} of {n} entries")
            table[column] = values / self.um_per_px if column.endswith("_px") else values
        frame = pd.DataFrame(table).iloc[self._order]
        return frame.reset_index(drop=True)


def _read_events(dataset: h5py.Dataset, ids: np.ndarray) -> dict[int, np.ndarray]:
    """Images of the events ``ids`` (sorted, unique), read in one go."""
    first, last = int(ids[0]), int(ids[-1])
    if last - first + 1 <= 2 * len(ids):  # close together: one slab is cheaper
        data, pos = dataset[first:last + 1], ids - first
    else:
        data, pos = dataset[ids], np.arange(len(ids))
    return {int(e): data[p] for e, p in zip(ids, pos, strict=True)}


def ml_score_codes(class_names: Sequence[str]) -> dict[str, str]:
    """Deterministic ``ml_score_xyz`` feature name for each class name.

    The code is the first three of the name's lower-case letters and digits (padded with
    ``x``); a code already taken changes its last character (``a``..``z``, ``0``..``9``),
    then its last two. Names are taken in the order given.
    """
    codes: dict[str, str] = {}
    taken: set[str] = set()
    for name in class_names:
        if name in codes:
            raise ValueError(f"class name {name!r} given twice")
        stem = (re.sub(r"[^a-z0-9]", "", str(name).lower()) + "xxx")[:3]
        candidates = [stem] + [stem[:2] + c for c in _CODE_CHARS] + [
            stem[0] + a + b for a in _CODE_CHARS for b in _CODE_CHARS]
        code = next((c for c in candidates if c not in taken), None)
        if code is None:
            raise ValueError(f"no free three-character code for class {name!r}")
        taken.add(code)
        codes[name] = f"ml_score_{code}"
    return codes


def _class_columns(cells: pd.DataFrame, class_names: Sequence[str] | None) -> list[str]:
    given = [c[2:] for c in cells.columns if isinstance(c, str) and c.startswith("p_")]
    if class_names is None:
        return given
    names = list(class_names)
    missing = [n for n in names if f"p_{n}" not in cells.columns]
    extra = sorted(set(given) - set(names))
    if missing or extra:
        raise ValueError(f"class columns do not match class_names: missing "
                         f"{['p_' + n for n in missing]}, not named {['p_' + n for n in extra]}")
    return names


def _cell_features(cells: pd.DataFrame, um_per_px: float, fps: float | None
                   ) -> dict[str, np.ndarray]:
    missing = [c for c in ("frame", "x_px", "y_px") if c not in cells.columns]
    if missing:
        raise ValueError(f"cells table lacks the columns {missing}")
    frame = cells["frame"].to_numpy(dtype=np.float64)
    if np.any(~np.isfinite(frame)) or np.any(frame < 0) or np.any(frame != np.rint(frame)):
        raise ValueError("cells 'frame' must hold integers >= 0")
    features = {"frame": frame.astype(np.uint64),
                "pos_x": cells["x_px"].to_numpy(dtype=np.float64) * um_per_px,
                "pos_y": cells["y_px"].to_numpy(dtype=np.float64) * um_per_px}
    if "area_px" in cells.columns:
        features["area_um"] = cells["area_px"].to_numpy(dtype=np.float64) * um_per_px**2
    if "deformation" in cells.columns:
        features["deform"] = cells["deformation"].to_numpy(dtype=np.float64)
    if fps is not None:
        features["time"] = frame / fps  # what dclab derives from frame and frame rate
    return features


def _log_lines(text: str) -> list[str]:
    """Text cut into lines of at most 100 characters (joined again without separator)."""
    return [text[i:i + _LOG_LINE] for i in range(0, len(text), _LOG_LINE)] or [""]


def _write_log(logs: h5py.Group, name: str, lines: Sequence[str]) -> None:
    encoded = [line.encode("utf-8") for line in lines]
    width = max([_LOG_LINE] + [len(b) for b in encoded])
    logs.create_dataset(name, data=np.array(encoded, dtype=f"S{width}"))


def _root_attributes(n: int, um_per_px: float, fps: float | None,
                     frame_shape: tuple[int, int], sample: str,
                     metadata: Mapping[str, object] | None) -> dict[str, object]:
    attrs: dict[str, object] = {
        "experiment:sample": sample, "experiment:run index": 1,
        "experiment:event count": n, "imaging:pixel size": float(um_per_px),
        "imaging:roi size x": int(frame_shape[1]), "imaging:roi size y": int(frame_shape[0]),
        "setup:software version": f"rbcflow {__version__}",
    }
    if fps is not None:
        attrs["imaging:frame rate"] = float(fps)
    for key, value in (metadata or {}).items():
        if key.count(":") != 1 or not all(key.split(":")):
            raise ValueError(f"metadata key {key!r} is not 'section:key'")
        if key in attrs:
            raise ValueError(f"metadata key {key!r} is set from the arguments")
        attrs[key] = value
    return attrs


def _check_write_arguments(um_per_px: float, fps: float | None,
                           frame_shape: Sequence[int], sample: str) -> None:
    if not (math.isfinite(um_per_px) and um_per_px > 0):
        raise ValueError(f"um_per_px must be a number > 0, not {um_per_px!r}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0 or None, not {fps!r}")
    if len(frame_shape) != 2 or min(int(s) for s in frame_shape) < 1:
        raise ValueError(f"frame_shape must be (height, width) > 0, not {frame_shape!r}")
    if not isinstance(sample, str) or not sample:
        raise ValueError("sample must be a non-empty string")


def write_rtdc(
    path: str | Path,
    cells: pd.DataFrame,
    *,
    um_per_px: float,
    fps: float | None,
    frame_shape: tuple[int, int],
    sample: str,
    class_names: Sequence[str] | None = None,
    provenance: Mapping[str, object] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """Write per-cell results as an ``.rtdc`` file that dclab and DCscope open.

    Parameters
    ----------
    path : output file (written under a temporary name, then renamed).
    cells : DataFrame, one row per cell (one event each). Columns:
        ``frame`` (int >= 0, the frame the cell is measured in), ``x_px``, ``y_px``
        (centroid in pixels, the convention of :mod:`rbcflow.detect`); optional
        ``area_px`` (pixel count of the filled blob), ``deformation`` (1 - circularity
        of the convex hull), and ``p_<class>`` (probability of each class, in [0, 1]).
        Other columns are ignored.
    um_per_px, fps : pixel size (um) and camera frame rate (Hz, None when unknown).
    frame_shape : (height, width) of the frames, in pixels.
    sample : the ``experiment:sample`` name.
    class_names : classes to write, each needing a ``p_<class>`` column (default: every
        ``p_`` column, in table order).
    provenance : extra entries of the provenance record (log ``rbcflow-provenance``).
    metadata : extra root attributes, ``{"section:key": value}`` (e.g.
        ``"setup:channel width"``); dclab's checker asks for several the arguments
        cannot know (``experiment:date``, ``imaging:flash device``, ``setup:medium``...).

    Returns
    -------
    dict
        Class name -> its ``ml_score_xyz`` feature. The same mapping is stored in the
        log ``rbcflow-classes`` and in ``user:ml_score_xyz`` attributes.

    Notes
    -----
    Positions become ``pos_x``/``pos_y`` in um and ``area_px`` becomes ``area_um``, each
    converted here with ``um_per_px``. dclab defines ``area_um`` as the convex hull's
    area; the filled pixel count written here is a few percent larger for a red cell.
    """
    _check_write_arguments(um_per_px, fps, frame_shape, sample)
    classes = _class_columns(cells, class_names)
    codes = ml_score_codes(classes)
    features = _cell_features(cells, um_per_px, fps)
    for name, feature in codes.items():
        scores = cells[f"p_{name}"].to_numpy(dtype=np.float64)
        if np.any(scores[~np.isnan(scores)] < 0) or np.any(scores[~np.isnan(scores)] > 1):
            raise ValueError(f"p_{name}: class probabilities must lie in [0, 1]")
        features[feature] = scores
    attrs = _root_attributes(len(cells), um_per_px, fps, tuple(frame_shape), sample, metadata)
    by_code = sorted(codes.items(), key=lambda item: item[1])
    attrs.update({f"user:{feature}": name for name, feature in by_code})
    class_log = [f"{feature} = {name} (ml_class {k})"
                 for k, (name, feature) in enumerate(by_code)]
    record = provenance_record(**dict(provenance or {}))
    compression = dict(hdf5plugin.Zstd(clevel=5)) if len(cells) else {}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(attrs)
        events = h5.create_group("events")
        for name, values in features.items():
            events.create_dataset(name, data=values, fletcher32=bool(len(cells)),
                                  **compression)
        logs = h5.create_group("logs")
        _write_log(logs, "rbcflow-classes", class_log or ["no class scores"])
        _write_log(logs, "rbcflow-provenance", _log_lines(json.dumps(record, default=str)))
    return codes


__all__ = ["READ_BLOCK_BYTES", "RtdcReader", "ml_score_codes", "write_rtdc"]
