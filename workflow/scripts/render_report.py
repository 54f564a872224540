"""Rule render_report: Table 1, figures and the self-contained HTML report."""

from pathlib import Path

from rbcflow.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from rbcflow.config import load_sample_sheet
    from rbcflow.report import ReportInputs, build_report

    config = snakemake.params.config
    sheet = load_sample_sheet(snakemake.input.sheet, conditions=config["conditions"])
    html = build_report(
        config, sheet, ReportInputs.from_mapping(snakemake.params.files),
        Path(snakemake.output.html).parent,
    )
    log.info("report written: %s", html)
