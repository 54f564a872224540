"""Grad-CAM saliency for the models of ``rbcflow.models``, and how much of it lies on the cell.

Grad-CAM (Selvaraju et al. 2017) in the form seed 001 uses for video: for the explained
layer's feature maps A^k (time t, rows i, columns j) and the class score y^c (the logit,
the input of the final softmax),

    alpha_{t,k} = mean_{i,j} dy^c / dA^k_{t,i,j},   L_{t,i,j} = ReLU(sum_k alpha_{t,k} A^k_{t,i,j}),

i.e. channel weights per time step. The map is then brought onto the clip's pixel grid
(linear interpolation between the feature cells' centres, in time and space) and scaled
per clip to a maximum of 1; a clip where nothing raises the class score gets zeros.

Layer explained by default (``default_layers``), per architecture:

=========  ========================================================================
model      layer
=========  ========================================================================
r2plus1d   the last spatio-temporal block's output (``b2_temporal_relu`` by default)
slowfast   both pathways' last feature maps (``slow_s2_temporal_relu``,
           ``fast_s2_spatial_relu``), as seed 001 did; each map weighted by its number
           of positions before they are added, so each pathway's share of the total
           equals its share of the (rectified) class score for a model that averages
           and then applies a linear layer
cnn_lstm   inside the per-frame CNN (``per_frame`` -> ``frame_cnn_b2_relu``): one map
           per frame, time weights taken per frame
frame      inside its CNN (``frame_cnn`` -> ``frame_cnn_b2_relu``): the middle frame
           only, the other frames get zeros (the model sees no other frame)
paper      the frozen EfficientNetB0 on each frame (``backbone``, its ``top_activation``,
           1 x 1 cells for 32 px frames: such maps can say *when*, not *where*)
i3d_lstm   the frozen I3D's ``Mixed_5c`` in every window (``backbone`` -> ``Mixed_5c``);
           the window maps are averaged where windows overlap, and frames after the
           last complete window get zeros
convlstm   ``convlstm``, the last ConvLSTM state: it has no time axis, so the same map
           is given to every frame
=========  ========================================================================

``layer_name`` picks another layer: a top-level layer name, a layer inside the nested
model of a top-level layer (found by name), or several top-level names at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from rbcflow.models import ClipWindows


def _outer_input(layer):
    # Functional models override ``.input`` with their own Input tensors; the base
    # Operation property gives the tensor the layer was called on in the outer graph.
    return keras.Operation.input.fget(layer)


def _outer_output(layer):
    return keras.Operation.output.fget(layer)


def _inner_model(layer) -> keras.Model | None:
    """The nested model of a layer (itself, or the one a TimeDistributed wraps)."""
    inner = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
    return inner if isinstance(inner, keras.Model) else None


def _rank(layer) -> int:
    return len(_outer_output(layer).shape)


def _last(model: keras.Model, rank: int, prefix: str = "") -> str:
    names = [
        layer.name for layer in model.layers
        if layer.name.startswith(prefix) and not isinstance(layer, keras.layers.InputLayer)
        and _rank(layer) == rank
    ]
    if not names:
        raise ValueError(f"{model.name} has no {rank}-D layer named {prefix}*")
    return names[-1]


def default_layers(model: keras.Model) -> list[tuple[str, ...]]:
    """The layer(s) Grad-CAM explains for ``model``, as paths of layer names.

    A path of one name is a top-level layer; (outer, inner) is layer ``inner`` of the
    model nested in top-level layer ``outer``. Unknown models: their last 5-D layer.
    """
    name = model.name
    if name == "slowfast":
        return [(_last(model, 5, "slow_"),), (_last(model, 5, "fast_"),)]
    if name in ("cnn_lstm", "frame"):
        outer = "per_frame" if name == "cnn_lstm" else "frame_cnn"
        return [(outer, _last(_inner_model(model.get_layer(outer)), 4))]
    if name == "i3d_lstm":
        return [("backbone", "Mixed_5c")]
    if name == "convlstm":
        return [("convlstm",)]
    return [(_last(model, 5),)]


def find_layer(model: keras.Model, name: str) -> tuple[str, ...]:
    """Path to the layer called ``name``: top level first, then inside nested models."""
    names = [layer.name for layer in model.layers]
    if name in names:
        return (name,)
    for layer in model.layers:
        inner = _inner_model(layer)
        if inner is not None and name in [sub.name for sub in inner.layers]:
            return (layer.name, name)
    raise ValueError(f"{model.name} has no layer {name!r} (nor a nested model holding one)")


def _is_softmax(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Activation)
        and layer.get_config().get("activation") == "softmax"
    )


def _logits_model(model: keras.Model) -> keras.Model:
    """The model's input -> the input of its final softmax (the class scores)."""
    last = model.layers[-1]
    if not _is_softmax(last):
        raise ValueError(f"{model.name} does not end in a softmax layer")
    return keras.Model(model.inputs, _outer_input(last))


def _tail_to_logits(model: keras.Model, starts: list):
    """Callable: the tensors ``starts`` (intermediate, in ``model``) -> the class scores."""
    last = model.layers[-1]
    if _is_softmax(last):
        tail = keras.Model(starts, _outer_input(last))
        return lambda tensors: tail(tensors, training=False)
    if isinstance(last, keras.Model):  # a nested head ending in the softmax (paper)
        head = _logits_model(last)
        feed = _outer_input(last)
        if len(starts) == 1 and feed is starts[0]:
            return lambda tensors: head(tensors[0], training=False)
        before = keras.Model(starts, feed)
        return lambda tensors: head(before(tensors, training=False), training=False)
    raise ValueError(f"{model.name} does not end in a softmax layer or a head model")


def _scores_follow_from(model: keras.Model, paths: list[tuple[str, ...]]) -> bool:
    """Whether the class scores can be computed from these top-level layers' outputs alone."""
    targets = [_outer_output(model.get_layer(p[0])) for p in paths]
    try:
        _tail_to_logits(model, targets)([keras.KerasTensor(t.shape, t.dtype) for t in targets])
    except ValueError:
        return False
    return True


class _Split:
    """The model cut at the explained layer(s): clips -> feature maps -> class scores."""

    def __init__(self, model: keras.Model, paths: list[tuple[str, ...]]):
        self.nested = len(paths[0]) == 2
        if any(len(p) != len(paths[0]) for p in paths) or len(paths[0]) > 2 or (
            self.nested and len(paths) > 1
        ):
            raise ValueError(f"explain either top-level layers or one nested layer, got {paths}")
        self.explained = len(paths)
        if not self.nested:
            cut = list(paths)
            if not _scores_follow_from(model, cut):
                # e.g. one SlowFast pathway: the scores need the other one's features too
                cut += [p for p in default_layers(model) if len(p) == 1 and p not in cut]
            targets = [_outer_output(model.get_layer(p[0])) for p in cut]
            self._head = keras.Model(model.inputs, targets)
            self._tail = _tail_to_logits(model, targets)
            return
        outer = model.get_layer(paths[0][0])
        inner = _inner_model(outer)
        target = inner.get_layer(paths[0][1]).output
        self.folded = isinstance(outer, keras.layers.TimeDistributed)
        self._prefix = keras.Model(model.inputs, _outer_input(outer))
        self._inner_head = keras.Model(inner.inputs, target)
        self._inner_tail = keras.Model(target, inner.outputs)
        self._tail = _tail_to_logits(model, [_outer_output(outer)])

    def features(self, clips) -> tuple[list, tuple]:
        """Feature maps of the explained layer(s), and what ``scores`` needs to go on."""
        if not self.nested:
            maps = self._head(clips, training=False)
            return (list(maps) if isinstance(maps, (list, tuple)) else [maps]), ()
        before = self._prefix(clips, training=False)
        shape = tuple(before.shape[:2])
        if self.folded:
            before = tf.reshape(before, (-1, *before.shape[2:]))
        return [self._inner_head(before, training=False)], shape

    def scores(self, maps: list, shape: tuple):
        """Class scores (logits) from the feature maps."""
        if not self.nested:
            return self._tail(maps)
        after = self._inner_tail(maps[0], training=False)
        if isinstance(after, (list, tuple)):
            after = after[0]
        if self.folded:
            after = tf.reshape(after, (*shape, *after.shape[1:]))
        return self._tail([after])


def _resize_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Linear interpolation along ``axis`` to ``size`` cells, cell centres aligned."""
    n = array.shape[axis]
    if n == size:
        return array
    centres = (np.arange(size) + 0.5) * n / size - 0.5
    centres = np.clip(centres, 0, n - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = (centres - low).reshape([-1 if a == axis % array.ndim else 1 for a in range(array.ndim)])
    return np.take(array, low, axis=axis) * (1 - frac) + np.take(array, high, axis=axis) * frac


def _resize(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize the last ``len(shape)`` axes of ``array`` to ``shape``."""
    for offset, size in enumerate(shape):
        array = _resize_axis(array, array.ndim - len(shape) + offset, size)
    return array


def _cam(feature_map: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """ReLU(sum_k alpha_k A_k), alpha averaged over the two spatial axes (..., h, w, C)."""
    alpha = gradient.mean(axis=(-3, -2), keepdims=True)
    return np.maximum((alpha * feature_map).sum(axis=-1), 0.0)


def _window_cam(cam: np.ndarray, model: keras.Model, clip_shape: tuple) -> np.ndarray:
    """(N * n_windows, t, h, w) window maps -> (N, T, H, W), overlaps averaged."""
    n_frames, height, width = clip_shape
    windows = next(layer for layer in model.layers if isinstance(layer, ClipWindows))
    starts = windows.starts(n_frames)
    cam = cam.reshape(-1, len(starts), *cam.shape[1:])
    total = np.zeros((len(cam), n_frames, height, width), np.float64)
    count = np.zeros(n_frames)
    for w, start in enumerate(starts):
        block = cam[:, w] if cam.ndim == 5 else cam[:, w, None]
        total[:, start: start + windows.window] += _resize(block, (windows.window, height, width))
        count[start: start + windows.window] += 1
    return total / np.maximum(count, 1)[None, :, None, None]


def _to_clip_grid(cam: np.ndarray, model, clip_shape, split: _Split) -> np.ndarray:
    """A layer's Grad-CAM, whatever its layout, on the clips' (N, T, H, W) grid."""
    n_frames, height, width = clip_shape
    if split.nested and split.folded:
        if any(isinstance(layer, ClipWindows) for layer in model.layers):
            return _window_cam(cam, model, clip_shape)
        cam = cam.reshape(-1, n_frames, *cam.shape[1:])  # (N, T, h, w)
        return _resize(cam, (n_frames, height, width))
    if cam.ndim == 4:  # (N, t, h, w)
        return _resize(cam, (n_frames, height, width))
    frame = _resize(cam, (height, width))  # (N, H, W): one frame, or no time axis
    if split.nested:  # the frame model's CNN sees its middle frame only
        grid = np.zeros((len(cam), n_frames, height, width))
        grid[:, _middle_frame(model, n_frames)] = frame
        return grid
    return np.repeat(frame[:, None], n_frames, axis=1)


def _middle_frame(model: keras.Model, n_frames: int) -> int:
    crops = [layer for layer in model.layers if isinstance(layer, keras.layers.Cropping3D)]
    return int(crops[0].cropping[0][0]) if crops else n_frames // 2


def _class_indices(class_index, first: int, scores: np.ndarray) -> np.ndarray:
    """Classes explained for the batch starting at clip ``first``."""
    if class_index is None:
        return scores.argmax(axis=1)
    if np.ndim(class_index) == 0:
        return np.full(len(scores), int(class_index))
    return np.asarray(class_index, dtype=int)[first: first + len(scores)]


def gradcam(
    model: keras.Model, clips: np.ndarray, class_index: int | Sequence[int] | None = None,
    layer_name: str | Sequence[str] | None = None, batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM maps of ``model`` for ``clips``, on the clips' pixel grid.

    Parameters
    ----------
    model : a model of ``rbcflow.models`` (built or loaded).
    clips : (N, T, H, W) or (N, T, H, W, 1) grey values, as the model takes them.
    class_index : the class explained: None (each clip's predicted class), one index
        for all clips, or one per clip.
    layer_name : None (``default_layers``), a layer name (found inside nested models
        too), or several top-level layer names whose maps are combined.
    batch_size : clips per gradient computation.

    Returns
    -------
    (N, T, H, W) float32 in [0, 1], each clip scaled to its own maximum (all zeros
    where no position raises the class score).
    """
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim == 4:
        clips = clips[..., None]
    if layer_name is None:
        paths = default_layers(model)
    else:
        names = [layer_name] if isinstance(layer_name, str) else list(layer_name)
        paths = [find_layer(model, name) for name in names]
    split = _Split(model, paths)
    clip_shape = clips.shape[1:4]
    maps = []
    for first in range(0, len(clips), batch_size):
        batch = tf.constant(clips[first: first + batch_size])
        features, shape = split.features(batch)
        with tf.GradientTape() as tape:
            tape.watch(features)
            scores = split.scores(features, shape)
            wanted = _class_indices(class_index, first, scores.numpy())
            score = tf.reduce_sum(tf.gather(scores, wanted, axis=1, batch_dims=1))
        explained = features[: split.explained]
        gradients = tape.gradient(score, explained)
        if any(g is None for g in gradients):
            raise ValueError(
                f"the class scores of {model.name} do not depend on {paths} (a layer upstream "
                "of another explained or default layer); explain it on its own"
            )
        combined = 0.0
        for feature_map, gradient in zip(explained, gradients, strict=True):
            cam = _cam(np.asarray(feature_map, np.float64), np.asarray(gradient, np.float64))
            positions = np.prod(cam.shape[1:])  # so each layer's mass matches its score share
            combined = combined + positions * _to_clip_grid(cam, model, clip_shape, split)
        maps.append(combined)
    maps = np.concatenate(maps)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    scale = np.where(peak > 0, 1 / np.where(peak > 0, peak, 1), 0.0)
    return (maps * scale[:, None, None, None]).astype(np.float32)


def in_cell_share(maps: np.ndarray, cell_masks: np.ndarray) -> np.ndarray:
    """Per clip, the share of the saliency mass that lies inside the cell mask.

    Parameters
    ----------
    maps : (N, T, H, W) non-negative saliency, e.g. from ``gradcam``.
    cell_masks : (N, T, H, W) bool, True on the cell.

    Returns
    -------
    (N,) float64 in [0, 1]; NaN for a clip whose map is all zeros. A model that reads
    the cell gives values near 1; one that reads the channel around it (seed 001's
    finding) gives values near the cell's share of the frame or below.
    """
    maps = np.asarray(maps, dtype=np.float64)
    cell_masks = np.asarray(cell_masks, dtype=bool)
    if maps.shape != cell_masks.shape or maps.ndim != 4:
        raise ValueError(
            f"maps {maps.shape} and cell masks {cell_masks.shape} must both be (N, T, H, W)"
        )
    if (maps < 0).any():
        raise ValueError("saliency maps must be non-negative")
    total = maps.sum(axis=(1, 2, 3))
    inside = np.where(cell_masks, maps, 0.0).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def cell_masks(clips: np.ndarray, grow_px: int = 2, min_contrast: float = 10.0,
               noise_factor: float = 4.0) -> np.ndarray:
    """Where the cell is in each frame of each clip, estimated from the frame itself.

    Clips do not store the cell's mask; but a clip is centred on its cell, and the
    frame's border is channel (or the background the clip was masked with). A pixel is
    a cell candidate where it departs from the border's median grey value by more than
    ``noise_factor`` robust standard deviations of the border (and at least
    ``min_contrast`` grey levels); the cell is the candidate region nearest the frame's
    centre, grown by ``grow_px`` (the resolution of the explained feature maps, so the
    map's blur around the cell counts as on it).

    Parameters
    ----------
    clips : (N, T, H, W) or (N, T, H, W, 1) grey values.

    Returns
    -------
    (N, T, H, W) bool; a frame with no candidate region gets an empty mask.
    """
    from scipy import ndimage

    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim == 5:
        clips = clips[..., 0]
    border = np.concatenate(
        [clips[..., 0, :], clips[..., -1, :], clips[..., 1:-1, 0], clips[..., 1:-1, -1]],
        axis=-1,
    )
    level = np.median(border, axis=-1)
    spread = 1.4826 * np.median(np.abs(border - level[..., None]), axis=-1)
    threshold = np.maximum(noise_factor * spread, min_contrast)
    candidates = np.abs(clips - level[..., None, None]) > threshold[..., None, None]
    height, width = clips.shape[2:]
    yy, xx = np.mgrid[0:height, 0:width]
    centre_distance = np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2)
    grow = ndimage.generate_binary_structure(2, 1)
    masks = np.zeros(candidates.shape, bool)
    for index in np.ndindex(candidates.shape[:2]):
        labelled, n = ndimage.label(candidates[index])
        if not n:
            continue
        nearest = ndimage.minimum(centre_distance, labelled, np.arange(1, n + 1))
        cell = labelled == 1 + int(np.argmin(nearest))
        masks[index] = ndimage.binary_dilation(cell, grow, iterations=grow_px) if grow_px else cell
    return masks


def spatially_resolved(maps: np.ndarray) -> bool:
    """Whether any frame's map varies in space (maps of 1 x 1 feature cells do not: they
    say when, not where, so their in-cell share is the cell's area share)."""
    maps = np.asarray(maps)
    flat = maps.reshape(*maps.shape[:2], -1)
    return bool((flat.max(axis=-1) - flat.min(axis=-1) > 1e-6).any())
