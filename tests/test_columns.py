"""rbcflow.columns: the chain's tables without pandas, written as pandas writes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rbcflow.columns import Columns, write_tsv


def _tables():
    rng = np.random.default_rng(3)
    floats = np.concatenate([rng.normal(0, 1e3, 40), rng.uniform(0, 1e-6, 10),
                             [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e20, 1 / 3, 2.5e-300]])
    n = len(floats)
    yield {"track_id": np.arange(n, dtype=np.int64) - 3,
           "velocity_mm_s": floats,
           "area": rng.integers(0, 2**40, n).astype(np.float64),
           "kept": rng.random(n) < 0.5,
           "status": np.array([["kept", "too_short", 'with "quote"', "tab\there", None][k % 5]
                               for k in range(n)], dtype=object)}
    yield {"reason": np.array([], dtype=object), "count": np.zeros(0, np.int64)}


@pytest.mark.parametrize("data", list(_tables()))
def test_write_tsv_gives_the_bytes_of_pandas_to_csv(tmp_path, data):
    write_tsv(Columns(data), tmp_path / "ours.tsv")
    pd.DataFrame(data).to_csv(tmp_path / "pandas.tsv", sep="\t", index=False)
    assert (tmp_path / "ours.tsv").read_bytes() == (tmp_path / "pandas.tsv").read_bytes()
    # and a DataFrame written by write_tsv too
    write_tsv(pd.DataFrame(data), tmp_path / "frame.tsv")
    assert (tmp_path / "frame.tsv").read_bytes() == (tmp_path / "pandas.tsv").read_bytes()


def test_columns_select_rows_and_refuse_ragged_columns():
    table = Columns({"a": [3, 1, 2], "b": ["x", "y", "z"]})
    assert len(table) == 3 and table.columns == ["a", "b"]
    picked = table.take(np.array([2, 0]))
    assert picked["a"].tolist() == [2, 3] and picked["b"].tolist() == ["z", "x"]
    assert table.take(table["a"] > 1)["b"].tolist() == ["x", "z"]
    pd.testing.assert_frame_equal(table.to_pandas(), pd.DataFrame({"a": [3, 1, 2],
                                                                   "b": ["x", "y", "z"]}))
    with pytest.raises(ValueError, match="one length"):
        Columns({"a": [1, 2], "b": [1]})
