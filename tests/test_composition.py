"""Composition maths: observed shares, Rogan-Gladen, the inverse confusion, the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from rbcflow.composition import (
    adjust_many,
    adjusted_fractions,
    bootstrap_composition,
    clip_composition,
    correctable,
    error_rates,
    observed_fractions,
    rogan_gladen,
)


def test_observed_fractions_count_predictions_and_are_nan_without_cells():
    assert observed_fractions(np.array([0, 1, 1, 2]), 3).tolist() == [0.25, 0.5, 0.25]
    assert np.isnan(observed_fractions(np.array([], dtype=int), 2)).all()
    with pytest.raises(ValueError, match="0..1"):
        observed_fractions(np.array([2]), 2)


def test_rogan_gladen_inverts_the_expected_observation():
    sensitivity, specificity = 0.9, 0.8
    for true in (0.0, 0.02, 0.3, 1.0):
        observed = true * sensitivity + (1 - true) * (1 - specificity)
        assert rogan_gladen(observed, sensitivity, specificity) == pytest.approx(true)
    # an uninformative classifier (J = 0) gives no estimate
    assert np.isnan(rogan_gladen(0.4, 0.5, 0.5))


def test_two_class_adjustment_is_rogan_gladen_and_clipped():
    confusion = np.array([[80, 20], [10, 90]])  # specificity 0.8, sensitivity 0.9
    observed = np.array([0.75, 0.25])
    expected = rogan_gladen(0.25, 0.9, 0.8)
    assert adjusted_fractions(observed, confusion)[1] == pytest.approx(expected)
    # fewer positives observed than the false-positive rate alone gives: clipped to 0
    assert adjusted_fractions(np.array([0.9, 0.1]), confusion).tolist() == [1.0, 0.0]


def test_inverse_confusion_recovers_a_three_class_composition():
    confusion = np.array([[70, 20, 10], [5, 90, 5], [10, 10, 80]])
    rates = error_rates(confusion)
    truth = np.array([0.5, 0.3, 0.2])
    observed = rates.T @ truth
    assert adjusted_fractions(observed, confusion) == pytest.approx(truth)
    # the two-class path and the general solve agree
    two = np.array([[80, 20], [10, 90]])
    observed2 = np.array([0.6, 0.4])
    general = np.linalg.solve(error_rates(two).T, observed2)
    assert adjusted_fractions(observed2, two) == pytest.approx(clip_composition(general))


def test_singular_confusion_gives_nan():
    confusion = np.array([[50, 50, 0], [50, 50, 0], [0, 0, 100]])
    assert np.isnan(adjusted_fractions(np.array([0.4, 0.4, 0.2]), confusion)).all()
    stacked = adjust_many(np.array([[0.4, 0.4, 0.2]] * 2),
                          np.stack([error_rates(confusion), np.eye(3)]))
    assert np.isnan(stacked[0]).all() and stacked[1] == pytest.approx([0.4, 0.4, 0.2])


def test_clip_composition_rescales_to_one():
    assert clip_composition(np.array([-0.1, 0.6, 0.6])).tolist() == [0.0, 0.5, 0.5]
    assert np.isnan(clip_composition(np.array([-1.0, 0.0]))).all()


def test_bootstrap_is_seeded_and_its_interval_holds_the_estimate():
    rng = np.random.default_rng(0)
    predicted = (rng.random(400) < 0.2).astype(int)
    confusion = np.array([[95, 5], [8, 92]])
    first = bootstrap_composition(predicted, confusion, n_boot=500, seed=3)
    again = bootstrap_composition(predicted, confusion, n_boot=500, seed=3)
    other = bootstrap_composition(predicted, confusion, n_boot=500, seed=4)
    assert first.adjusted_low.tolist() == again.adjusted_low.tolist()
    assert first.adjusted_low.tolist() != other.adjusted_low.tolist()
    assert first.n_cells == 400
    for j in range(2):
        assert first.adjusted_low[j] <= first.adjusted[j] <= first.adjusted_high[j]
        assert first.observed_low[j] <= first.observed[j] <= first.observed_high[j]


def test_bootstrap_interval_widens_with_a_smaller_test_set():
    predicted = np.r_[np.zeros(300, int), np.ones(100, int)]
    large = bootstrap_composition(predicted, np.array([[950, 50], [80, 920]]), 800, 1)
    small = bootstrap_composition(predicted, np.array([[19, 1], [2, 18]]), 800, 1)
    width = lambda c: c.adjusted_high[1] - c.adjusted_low[1]  # noqa: E731
    assert width(small) > 1.3 * width(large)


def test_bootstrap_without_cells_is_nan():
    empty = bootstrap_composition(np.array([], dtype=int), np.array([[9, 1], [1, 9]]))
    assert empty.n_cells == 0
    assert np.isnan(empty.adjusted).all() and np.isnan(empty.adjusted_low).all()


def test_bootstrap_coverage_on_binomial_samples():
    """Over many simulated samples and test sets, the 95 % interval covers the truth
    about 95 % of the time (a check of the method, not of any model)."""
    rng = np.random.default_rng(11)
    sensitivity, specificity, truth = 0.85, 0.9, 0.1
    covered = 0
    trials = 120
    for trial in range(trials):
        true = rng.random(300) < truth
        predicted = np.where(true, rng.random(300) < sensitivity,
                             rng.random(300) > specificity).astype(int)
        negatives, positives = 150, 150
        tn = rng.binomial(negatives, specificity)
        tp = rng.binomial(positives, sensitivity)
        confusion = np.array([[tn, negatives - tn], [positives - tp, tp]])
        result = bootstrap_composition(predicted, confusion, n_boot=400, seed=trial)
        covered += result.adjusted_low[1] <= truth <= result.adjusted_high[1]
    assert 0.88 <= covered / trials <= 1.0


def test_correctable_tells_an_informative_confusion_from_one_that_is_not():
    assert correctable(np.array([[40, 5], [3, 42]]))
    assert not correctable(np.array([[0, 9], [1, 8]]))  # worse than chance on its test set
    assert not correctable(np.array([[10, 0], [0, 0]]))  # no positive test clip
    assert correctable(np.eye(3) * 10 + 1)


#: P(predicted j | true i) of a four-class classifier that confuses neighbouring classes.
FOUR_CLASS_RATES = np.array([[0.80, 0.10, 0.06, 0.04],
                             [0.12, 0.70, 0.12, 0.06],
                             [0.05, 0.15, 0.72, 0.08],
                             [0.03, 0.07, 0.10, 0.80]])


def _four_class_trial(rng, truth, n_cells=400, n_test=120):
    """Cells of a sample with composition ``truth`` and a test set of ``n_test`` clips per
    class, both classified with ``FOUR_CLASS_RATES``; (predicted cells, test confusion)."""
    true = rng.choice(4, size=n_cells, p=truth)
    predicted = np.array([rng.choice(4, p=FOUR_CLASS_RATES[t]) for t in true])
    confusion = np.stack([rng.multinomial(n_test, row) for row in FOUR_CLASS_RATES])
    return predicted, confusion


def test_inverse_confusion_corrects_a_four_class_sample_of_known_composition():
    truth = np.array([0.55, 0.25, 0.15, 0.05])
    rng = np.random.default_rng(4)
    predicted, confusion = _four_class_trial(rng, truth, n_cells=2000, n_test=400)
    result = bootstrap_composition(predicted, confusion, n_boot=500, seed=1)
    # the raw shares are pulled towards the classes the classifier confuses them with
    assert result.observed[0] < truth[0] - 0.05 and result.observed[3] > truth[3] + 0.02
    assert np.all(np.abs(result.adjusted - truth) < 0.04), result.adjusted
    assert result.adjusted.sum() == pytest.approx(1.0)
    assert np.all((result.adjusted_low <= truth) & (truth <= result.adjusted_high))
    assert not np.all((result.observed_low <= truth) & (truth <= result.observed_high))


def test_four_class_interval_covers_the_truth_about_95_percent_of_the_time():
    """Coverage of each class's interval over simulated samples and test sets, for a
    composition with one rare class (where clipping at 0 matters)."""
    truth = np.array([0.6, 0.2, 0.15, 0.05])
    rng = np.random.default_rng(12)
    trials, covered = 60, np.zeros(4)
    for trial in range(trials):
        predicted, confusion = _four_class_trial(rng, truth)
        result = bootstrap_composition(predicted, confusion, n_boot=300, seed=trial)
        covered += (result.adjusted_low <= truth) & (truth <= result.adjusted_high)
    assert np.all(covered / trials >= 0.85), covered / trials
