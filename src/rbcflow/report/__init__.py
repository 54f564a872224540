"""The Table-1 report: tables, figures and one self-contained HTML page.

``build_report`` reads the outputs of every stage under the results folder and writes
``table1.{csv,md,json}``, ``ablations.csv``, ``figures/*.png`` and ``index.html`` (see
docs/architecture.md). Missing optional inputs are stated in the page.
"""

from rbcflow.report.build import FIGURES, build_report

__all__ = ["FIGURES", "build_report"]
