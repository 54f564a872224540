"""The Table-1 report: tables, figures and one self-contained HTML page.

``build_report`` reads the files listed in a :class:`ReportInputs` (the workflow declares
exactly those) and writes ``table1.{csv,md,json}``, the other tables, ``figures/*.png``
and ``index.html`` (see docs/architecture.md). Missing optional inputs are stated in the
page.
"""

from rbcflow.report.build import FIGURES, TABLES, build_report
from rbcflow.report.inputs import ReportInputs

__all__ = ["FIGURES", "TABLES", "ReportInputs", "build_report"]
