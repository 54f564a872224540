"""A sample's composition from per-cell predictions, corrected for the classifier's errors.

The share of cells *predicted* as a class is biased wherever the classifier errs: with
5 % false positives, a sample without a single positive cell still reads 5 % positive.
With the rates measured on the test set (the confusion matrix ``C``, rows the true
class, columns the predicted one; ``M = C / C.sum(axis=1)`` the rate of each prediction
given each true class) the observed shares ``q`` are ``M.T @ p`` for the true shares
``p``, so ``p`` is recovered by solving that system: the Rogan-Gladen estimator for two
classes (``(q + specificity - 1) / (sensitivity + specificity - 1)``), the inverse of the
confusion matrix for more. Estimates are clipped to [0, 1] and rescaled to add up to 1.

Uncertainty has two sources, both resampled by :func:`bootstrap_composition`: which cells
the sample happened to contain (cells resampled with replacement) and how well the test
set measured the error rates (test clips resampled with replacement within each true
class, i.e. each row of ``C`` redrawn from its own proportions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Below this, sensitivity + specificity - 1 (or the confusion matrix's determinant) is
#: taken as zero: the classifier carries no information to correct with.
_SINGULAR = 1e-9


def observed_fractions(predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of cells predicted as each class (NaN for every class when there are none).

    ``predicted`` holds class indices 0..n_classes-1.
    """
    predicted = np.asarray(predicted, dtype=np.int64)
    if predicted.size and (predicted.min() < 0 or predicted.max() >= n_classes):
        raise ValueError(f"class indices must be in 0..{n_classes - 1}")
    if predicted.size == 0:
        return np.full(n_classes, np.nan)
    return np.bincount(predicted, minlength=n_classes) / predicted.size


def error_rates(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix: P(predicted j | true i); NaN rows for absent classes."""
    confusion = np.asarray(confusion, dtype=float)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {confusion.shape}")
    if (confusion < 0).any():
        raise ValueError("a confusion matrix holds counts (>= 0)")
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return confusion / totals


def rogan_gladen(observed_positive: np.ndarray | float, sensitivity: np.ndarray | float,
                 specificity: np.ndarray | float) -> np.ndarray:
    """True positive share from the observed one (not clipped); NaN where J <= 0.

    J = sensitivity + specificity - 1 (Youden's index): at J = 0 the prediction is
    independent of the truth and nothing can be corrected.
    """
    observed_positive = np.asarray(observed_positive, dtype=float)
    youden = np.asarray(sensitivity, dtype=float) + np.asarray(specificity, dtype=float) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = (observed_positive + np.asarray(specificity, dtype=float) - 1) / youden
    return np.where(youden > _SINGULAR, estimate, np.nan)


def clip_composition(shares: np.ndarray) -> np.ndarray:
    """Shares clipped to [0, 1] and rescaled to add up to 1, along the last axis."""
    shares = np.clip(np.asarray(shares, dtype=float), 0.0, 1.0)
    totals = shares.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, shares / totals, np.nan)


def adjust_many(observed: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Corrected shares for stacks of observations and rate matrices.

    Parameters
    ----------
    observed : (..., K) observed shares.
    rates : (..., K, K) ``P(predicted j | true i)`` (broadcast against ``observed``).

    Returns
    -------
    (..., K) clipped, renormalised estimates; NaN where the rates cannot be inverted.
    """
    observed = np.asarray(observed, dtype=float)
    rates = np.asarray(rates, dtype=float)
    k = observed.shape[-1]
    if rates.shape[-2:] != (k, k):
        raise ValueError(f"rates must be ({k}, {k}) per observation, got {rates.shape[-2:]}")
    # More than two classes: the exact inverse, then clipped to [0, 1] and renormalised,
    # rather than a least-squares solution constrained to the simplex. Inside the simplex
    # both are the same; outside it (a rare class estimated below 0 from sampling noise)
    # clipping is what Rogan-Gladen does for two classes, keeps one rule for every K, is
    # a closed form that vectorises over the bootstrap's replicates, and its coverage is
    # checked in tests/test_composition.py. The constrained solution would also move the
    # other shares to absorb the negative one, which the data do not ask for.
    if k == 2:
        positive = rogan_gladen(observed[..., 1], rates[..., 1, 1], rates[..., 0, 0])
        raw = np.stack([1 - positive, positive], axis=-1)
    else:
        transposed = np.swapaxes(rates, -1, -2)
        transposed, observed = np.broadcast_arrays(transposed, observed[..., None])
        observed = observed[..., 0]
        determinant = np.linalg.det(np.nan_to_num(transposed))
        usable = (np.abs(determinant) > _SINGULAR) & np.isfinite(transposed).all(axis=(-1, -2))
        safe = np.where(usable[..., None, None], np.nan_to_num(transposed), np.eye(k))
        raw = np.linalg.solve(safe, np.nan_to_num(observed)[..., None])[..., 0]
        raw = np.where(usable[..., None], raw, np.nan)
    return clip_composition(raw)


def adjusted_fractions(observed: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Shares corrected for the confusion matrix (Rogan-Gladen for two classes)."""
    return adjust_many(observed, error_rates(confusion))


@dataclass(frozen=True)
class Composition:
    """One sample's composition: per class, observed and corrected shares with intervals."""

    n_cells: int
    observed: np.ndarray
    observed_low: np.ndarray
    observed_high: np.ndarray
    adjusted: np.ndarray
    adjusted_low: np.ndarray
    adjusted_high: np.ndarray


def _percentiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - level) / 2 * 100
    k = values.shape[-1]
    low, high = np.full(k, np.nan), np.full(k, np.nan)
    for j in range(k):
        column = values[:, j]
        column = column[np.isfinite(column)]
        if column.size:
            low[j], high[j] = np.percentile(column, [tail, 100 - tail])
    return low, high


def bootstrap_composition(
    predicted: np.ndarray,
    confusion: np.ndarray,
    n_boot: int = 1000,
    seed: int = 42,
    level: float = 0.95,
) -> Composition:
    """Observed and corrected shares of one sample with percentile bootstrap intervals.

    Each replicate redraws the sample's cells (a multinomial draw of as many cells, with
    the observed shares) and every row of the test confusion matrix (as many test clips
    of that true class, with that row's proportions), then corrects the redrawn shares
    with the redrawn rates. Replicates whose rates cannot be inverted are left out.

    Parameters
    ----------
    predicted : class index of every cell of the sample.
    confusion : (K, K) test confusion matrix, rows the true class.
    n_boot, seed, level : replicates, their seed, the interval's coverage.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    k = confusion.shape[0]
    observed = observed_fractions(predicted, k)
    n_cells = int(np.asarray(predicted).size)
    adjusted = adjusted_fractions(observed, confusion)
    nan = np.full(k, np.nan)
    if n_cells == 0:
        return Composition(0, observed, nan, nan, adjusted, nan, nan)
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n_cells, observed, size=n_boot) / n_cells
    rates = error_rates(confusion)
    redrawn = np.empty((n_boot, k, k))
    for i in range(k):
        total = int(confusion[i].sum())
        if total == 0:
            redrawn[:, i, :] = np.nan
        else:
            redrawn[:, i, :] = rng.multinomial(total, rates[i], size=n_boot) / total
    corrected = adjust_many(cells, redrawn)
    observed_low, observed_high = _percentiles(cells, level)
    adjusted_low, adjusted_high = _percentiles(corrected, level)
    return Composition(n_cells, observed, observed_low, observed_high, adjusted,
                       adjusted_low, adjusted_high)


def correctable(confusion: np.ndarray) -> bool:
    """Whether the confusion matrix can correct a composition at all.

    False when the classifier's predictions carry no information about the truth on its
    test set (two classes: sensitivity + specificity <= 1; more: a singular matrix) or a
    class is missing from the test set; the adjusted shares are then NaN.
    """
    k = np.asarray(confusion).shape[0]
    return bool(np.isfinite(adjusted_fractions(np.full(k, 1.0 / k), confusion)).all())
