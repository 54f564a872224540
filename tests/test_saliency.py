"""Grad-CAM: the maps' layout per architecture, the gradient maths, and a shortcut it exposes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from rbcflow.models import MODELS, build_model, compile_model
from rbcflow.saliency import (
    _resize,
    _Split,
    cell_masks,
    default_layers,
    gradcam,
    in_cell_share,
    spatially_resolved,
)

SHAPE = (8, 16, 16, 1)


def _clips(n=3, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


def _build(name, shape=SHAPE, **options):
    if name == "paper":
        return build_model(name, (4, 32, 32, 1), weights=None)
    if name == "i3d_lstm":
        options = {"weights": None, "width": 0.125, "window": 4, "stride": 2, **options}
    return build_model(name, shape, n_classes=3, **options)


@pytest.mark.parametrize("name", MODELS)
def test_maps_cover_the_clip_in_unit_range_and_repeat_exactly(name):
    keras.utils.set_random_seed(1)
    model = _build(name)
    x = _clips(3, tuple(model.input.shape[1:]))
    maps = gradcam(model, x, batch_size=2)
    assert maps.shape == (3, *x.shape[1:4]) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(maps.reshape(3, -1).max(axis=1), 1) or not maps.any()
    np.testing.assert_array_equal(gradcam(model, x, batch_size=2), maps)
    # other batch sizes differ in the last float32 digits only
    np.testing.assert_allclose(gradcam(model, x, batch_size=3), maps, rtol=1e-5, atol=1e-6)
    # the cut at the explained layer reproduces the model
    split = _Split(model, default_layers(model))
    scores = split.scores(*split.features(tf.constant(x)))
    np.testing.assert_allclose(
        tf.nn.softmax(scores).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-6
    )


def test_r2plus1d_map_is_the_class_weighted_sum_of_its_last_feature_maps():
    # global average pooling then a dense layer: dy_c/dA_k = w_kc / n_positions, so the
    # map is ReLU(A @ w_c), interpolated to the clip and scaled to a maximum of 1
    keras.utils.set_random_seed(2)
    model = build_model("r2plus1d", SHAPE, n_classes=3)
    x = _clips(2)
    features = keras.Model(model.input, model.get_layer("b2_temporal_relu").output)(x).numpy()
    kernel = model.get_layer("head_logits").kernel.numpy()
    expected = np.maximum(features @ kernel[:, 2], 0)  # (N, t, h, w)
    assert expected.shape == (2, 4, 4, 4)
    expected = _resize(expected, SHAPE[:3])
    expected /= expected.reshape(2, -1).max(axis=1)[:, None, None, None]
    np.testing.assert_allclose(gradcam(model, x, class_index=2), expected, rtol=1e-4, atol=1e-5)


def test_maps_are_interpolated_between_feature_cell_centres():
    cells = np.array([[0.0, 1.0]])
    np.testing.assert_allclose(_resize(cells, (4,)), [[0, 0.25, 0.75, 1]])
    np.testing.assert_allclose(_resize(cells, (1,)), [[0.5]])


def test_class_index_per_clip_matches_one_class_at_a_time():
    keras.utils.set_random_seed(3)
    model = build_model("slowfast", (16, 16, 16, 1), n_classes=3)
    x = _clips(3, (16, 16, 16, 1))
    mixed = gradcam(model, x, class_index=[0, 2, 1])
    for i, c in enumerate([0, 2, 1]):
        np.testing.assert_allclose(mixed[i], gradcam(model, x[i: i + 1], class_index=c)[0])
    predicted = model(x).numpy().argmax(axis=1)
    np.testing.assert_allclose(gradcam(model, x), gradcam(model, x, class_index=predicted))


def test_slowfast_explains_both_pathways_or_one():
    keras.utils.set_random_seed(4)
    model = build_model("slowfast", (16, 16, 16, 1))
    assert default_layers(model) == [("slow_s2_temporal_relu",), ("fast_s2_spatial_relu",)]
    x = _clips(2, (16, 16, 16, 1))
    both = gradcam(model, x)
    slow = gradcam(model, x, layer_name="slow_s2_temporal_relu")
    fast = gradcam(model, x, layer_name="fast_s2_spatial_relu")
    assert not np.allclose(slow, fast)
    assert not np.allclose(both, slow) and not np.allclose(both, fast)
    # an earlier slow layer: the scores also flow through the later one, which is not cut
    with pytest.raises(ValueError, match="do not depend on"):
        gradcam(model, x, layer_name="slow_s1_spatial_relu")


def test_frame_model_maps_only_its_middle_frame_and_convlstm_all_frames_alike():
    keras.utils.set_random_seed(5)
    frame = gradcam(build_model("frame", SHAPE), _clips())
    assert frame[:, SHAPE[0] // 2].any()
    assert not np.delete(frame, SHAPE[0] // 2, axis=1).any()
    convlstm = gradcam(build_model("convlstm", SHAPE), _clips())
    np.testing.assert_array_equal(convlstm, np.repeat(convlstm[:, :1], SHAPE[0], axis=1))


def test_i3d_maps_leave_frames_after_the_last_window_empty():
    keras.utils.set_random_seed(6)
    model = _build("i3d_lstm", window=4, stride=3)  # windows at frames 0 and 3
    assert default_layers(model) == [("backbone", "Mixed_5c")]
    maps = gradcam(model, _clips())
    assert not maps[:, 7].any()
    assert maps[:, :7].reshape(3, -1).max(axis=1).min() > 0


def test_nested_layers_are_found_by_name():
    keras.utils.set_random_seed(7)
    model = build_model("cnn_lstm", SHAPE)
    x = _clips(2)
    by_name = gradcam(model, x, layer_name="frame_cnn_b2_relu")
    np.testing.assert_array_equal(by_name, gradcam(model, x))
    earlier = gradcam(model, x, layer_name="frame_cnn_b1_relu")
    assert earlier.shape == (2, *SHAPE[:3]) and not np.allclose(earlier, gradcam(model, x))
    with pytest.raises(ValueError, match="no layer 'missing'"):
        gradcam(model, x, layer_name="missing")


def test_in_cell_share_is_the_saliency_mass_inside_the_mask():
    masks = np.zeros((2, 2, 4, 4), bool)
    masks[:, :, 1:3, 1:3] = True  # a quarter of the pixels
    maps = np.ones((2, 2, 4, 4))
    maps[1] = 0
    maps[1, :, 1, 1] = 0.5
    maps[1, :, 0, 0] = 1.5
    np.testing.assert_allclose(in_cell_share(maps, masks), [0.25, 0.25])
    assert np.isnan(in_cell_share(np.zeros_like(maps), masks)).all()
    with pytest.raises(ValueError, match="must both be"):
        in_cell_share(maps, masks[:, :1])


FRAMES, SIZE = 4, 32


def _ellipse(cy, cx, ry, rx):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def cell_clips(n: int, class_in: str, seed: int):
    """Clips of a dark cell in the channel's centre, noisy, with the class written either
    into the channel (``"channel"``: the same round cell for both classes, a bright stripe
    along the top wall for class 1 and along the bottom wall for class 0, so grey-level
    statistics do not differ) or into the cell (``"cell"``: lying vs standing ellipse of
    the same area, stripes on neither wall). With these settings both models learn their
    task in 10 epochs for model seeds 0-3 (in-cell shares 0.08-0.10 against 0.38-0.50).

    Returns clips (n, T, H, W), labels (n,) and cell masks (the cell grown by 2 px, the
    resolution of the explained feature maps).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    clips = np.empty((n, FRAMES, SIZE, SIZE), np.float32)
    masks = np.empty((n, FRAMES, SIZE, SIZE), bool)
    for i, label in enumerate(labels):
        cy, cx = SIZE / 2 + rng.uniform(-1.5, 1.5, 2)
        radii = (5, 5) if class_in == "channel" else ((3, 8) if label == 0 else (8, 3))
        frame = np.full((SIZE, SIZE), 100.0)
        frame[_ellipse(cy, cx, *radii)] = 30
        if class_in == "channel":
            frame[slice(0, 4) if label == 1 else slice(SIZE - 4, SIZE)] += 60
        clips[i] = frame + rng.normal(0, 8, (FRAMES, SIZE, SIZE))
        masks[i] = _ellipse(cy, cx, radii[0] + 2, radii[1] + 2)
    return clips, labels, masks


def _train_and_explain(class_in: str):
    """In-cell share of Grad-CAM on held-out clips, test accuracy, mask area share."""
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    x, y, _ = cell_clips(48, class_in, seed=1)
    x_test, y_test, masks = cell_clips(24, class_in, seed=2)
    model = compile_model(build_model("r2plus1d", (FRAMES, SIZE, SIZE, 1)), 3e-3)
    model.fit(x[..., None], y, epochs=10, batch_size=16, shuffle=True, verbose=0)
    accuracy = float((model.predict(x_test[..., None], verbose=0).argmax(axis=1) == y_test).mean())
    share = in_cell_share(gradcam(model, x_test), masks)
    return share, accuracy, float(masks.mean())


def test_gradcam_shows_a_shortcut_through_the_channel():
    shortcut, shortcut_accuracy, area = _train_and_explain("channel")
    in_cell, in_cell_accuracy, _ = _train_and_explain("cell")
    # both models solve their task ...
    assert shortcut_accuracy >= 0.9 and in_cell_accuracy >= 0.9
    # ... but the first looks at the walls: less saliency on the cell than its area,
    # while the second puts more than twice its area's share there
    assert np.nanmean(shortcut) < area < 2 * area < np.nanmean(in_cell)
    assert np.nanmean(in_cell) - np.nanmean(shortcut) > 0.2
    # the same seeds give the same model and the same maps
    again, _, _ = _train_and_explain("channel")
    np.testing.assert_array_equal(again, shortcut)


def _cell_clip_files(folder, class_in: str, n_donors: int = 8, per_class: int = 8):
    """Clip files of ``cell_clips`` clips: one file per donor and condition (native =
    class 0, DA = class 1), for the workflow's split, training and evaluation."""
    import pandas as pd

    from rbcflow.clipstore import write_clip_file

    folder.mkdir(parents=True)
    files = []
    for d in range(n_donors):
        clips, labels, _ = cell_clips(2 * per_class, class_in, seed=100 + d)
        for label, condition in ((0, "native"), (1, "DA")):
            chosen = clips[labels == label]
            sample = f"D{d}_{condition}"
            n = len(chosen)
            table = pd.DataFrame({
                "clip_id": [f"{sample}/{i}" for i in range(n)], "sample": sample,
                "donor": f"D{d}", "condition": condition, "focus": "in", "session": f"s{d}",
                "track_id": np.arange(n), "first_frame": np.arange(n) * 10,
                "last_frame": np.arange(n) * 10 + FRAMES, "velocity_mm_s": np.ones(n),
                "centerline_distance_um": np.zeros(n), "flight_distance_px": np.ones(n),
            })
            clip_bytes = np.clip(chosen, 0, 255).astype(np.uint8)
            files.append(write_clip_file(folder / f"{sample}.h5", clip_bytes, table))
    return files


def _report_saliency(tmp_path, class_in: str):
    """Train and evaluate r2plus1d through the workflow's functions on a dataset whose
    class lies in the channel (leaky) or in the cell, and render the report's section."""
    from rbcflow.evaluate import evaluate_task
    from rbcflow.report import build
    from rbcflow.report.sections import saliency_section
    from rbcflow.split import split_task
    from rbcflow.train import train_task

    task = {"name": "DA", "negative": ["native"], "positive": ["DA"]}
    root = tmp_path / class_in
    files = _cell_clip_files(root / "clips", class_in)
    split_task(files, task, root / "DA.tsv", root / "DA.json", 0.5, 0.25, 0.25, seed=1)
    params = {"model": "r2plus1d", "epochs": 10, "patience": 10, "batch_size": 16,
              "learning_rate": 3e-3, "augment_flip": False, "augment_shift_px": 0,
              "augment_brightness": 0.0}
    train_task(root / "DA.tsv", files, root / "m", params, seed=0, ablations=False)
    metrics = evaluate_task(root / "DA.tsv", files, root / "m", task,
                            {"bootstrap": 100, "ablations": False, "saliency_clips": 32})
    loaded = {"metrics": {"DA": metrics}, "extra_metrics": {},
              "saliency": {"DA": np.load(root / "m" / "saliency.npy")}}
    figures = build._Figures(root / "report" / "figures")
    figures.folder.mkdir(parents=True)
    section = saliency_section(figures, root / "report", loaded,
                               {"report": {"min_saliency_enrichment": 1.5}})
    html = "".join(section.body)
    return metrics, html


def test_report_warns_when_saliency_sits_on_the_channel_not_the_cell(tmp_path):
    leaky, leaky_html = _report_saliency(tmp_path, "channel")
    honest, honest_html = _report_saliency(tmp_path, "cell")
    # both models learn their task from the clips ...
    assert leaky["accuracy"]["test"] >= 0.9 and honest["accuracy"]["test"] >= 0.9
    # ... but the leaky one's saliency lies on the channel wall: its share on the cell
    # drops below the cell's share of the clip, and the report says so
    low, high = leaky["saliency"], honest["saliency"]
    assert low["in_cell_share"] < low["cell_area_share"] < high["in_cell_share"]
    assert high["in_cell_share"] - low["in_cell_share"] > 0.2
    assert "saliency sits mostly outside the cell" in leaky_html
    assert "saliency sits mostly outside the cell" not in honest_html
    assert (tmp_path / "channel" / "report" / "figures" / "saliency.png").stat().st_size > 0


@pytest.mark.parametrize("class_in", ["cell", "channel"])
def test_cell_masks_find_the_cell_and_leave_the_channel_wall_out(class_in):
    clips, _, truth = cell_clips(12, class_in, seed=3)
    found = cell_masks(clips)
    overlap = (found & truth).sum() / (found | truth).sum()
    assert overlap > 0.8, overlap
    assert not found[:, :, :4].any() and not found[:, :, -4:].any()  # the bright stripes
    assert not cell_masks(np.full((1, 2, 16, 16), 90.0)).any()  # no cell, no mask


def test_maps_without_spatial_resolution_are_recognised():
    flat = np.ones((2, 3, 8, 8)) * np.arange(3)[None, :, None, None]
    assert not spatially_resolved(flat)
    flat[0, 1, 2, 2] = 5
    assert spatially_resolved(flat)
