"""Tables as named numpy columns, and their TSV files, without importing pandas.

The chain's single pass (``rbcflow.preprocess``) builds, filters and writes a few small
tables per recording: the tracks table, the track summary, the clip rows and the clip QC
counts. Importing pandas for them would cost every job some 0.25 s of start-up, a third
of a short recording's whole run. :class:`Columns` holds such a table as 1-D numpy arrays
of one length, and the functions of the chain that read a table take a :class:`Columns`
or a pandas DataFrame alike: they ask only ``table[name]`` (a column, array-like),
``len(table)`` (its rows) and ``table.columns`` (the names, in order).

:func:`write_tsv` writes either kind as ``DataFrame.to_csv(path, sep="\\t", index=False)``
does, byte for byte, so the files read back as before.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np


class Columns:
    """A table: named 1-D numpy arrays of one length, in order.

    ``table[name]`` is the column's array, ``len(table)`` the number of rows,
    ``table.columns`` the names.
    """

    def __init__(self, data: Mapping[str, object]) -> None:
        self._data = {str(name): np.asarray(values) for name, values in data.items()}
        lengths = {len(values) for values in self._data.values()}
        if len(lengths) > 1 or any(v.ndim != 1 for v in self._data.values()):
            raise ValueError(f"columns must be 1-D and of one length, got lengths {lengths}")
        self._rows = lengths.pop() if lengths else 0

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]], columns: Sequence[str],
                  dtypes: Mapping[str, object] | None = None) -> Columns:
        """A table of ``rows`` (one mapping per row, keys ``columns``).

        ``dtypes`` gives a column's type where its values alone cannot (no rows at all).
        """
        dtypes = dtypes or {}
        return cls({c: np.array([row[c] for row in rows], dtype=dtypes.get(c)) for c in columns})

    @property
    def columns(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name]

    def take(self, rows: np.ndarray | Sequence[int]) -> Columns:
        """The rows selected by a boolean mask or by their indices (in that order)."""
        rows = np.asarray(rows)
        if rows.dtype != bool:
            rows = rows.astype(np.intp)
        return Columns({name: values[rows] for name, values in self._data.items()})

    def to_pandas(self):
        """The table as a pandas DataFrame (default index; pandas imported here)."""
        import pandas as pd

        return pd.DataFrame(dict(self._data))

    def __repr__(self) -> str:
        return f"Columns({len(self)} rows: {', '.join(self.columns)})"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def column_text(values: Iterable[object]) -> list[str]:
    """A column's fields as ``DataFrame.to_csv`` writes them.

    Floats as numpy's shortest text that reads back exactly (``astype(str)``, which pandas
    calls too), NaN as an empty field; integers and booleans as ``str``; other values as
    ``str``, missing ones (None, NaN) as an empty field.
    """
    values = np.asarray(values)
    if values.dtype.kind == "f":
        text = values.astype(str)
        text[np.isnan(values)] = ""
        return text.tolist()
    if values.dtype.kind in "iub":
        return values.astype(str).tolist()
    return ["" if _is_missing(v) else str(v) for v in values.tolist()]


def write_tsv(table, path: str | Path) -> None:
    """Write a table (:class:`Columns` or DataFrame) as tab-separated text with a header.

    The bytes of ``table.to_csv(path, sep="\\t", index=False)`` on Linux: the standard
    library's CSV writer with pandas' settings (minimal quoting, ``\\n`` line ends).
    """
    names = list(table.columns)
    fields = [column_text(table[name]) for name in names]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n",
                            quoting=csv.QUOTE_MINIMAL, quotechar='"', doublequote=True)
        writer.writerow(names)
        writer.writerows(zip(*fields, strict=True))
