# The Table-1 report: tables, figures and one self-contained HTML page.


rule render_report:
    input:
        sheet=sample_sheet_path,
        metrics=expand(f"{RESULTS}/models/{{task}}/metrics.json", task=TASKS),
        histories=expand(f"{RESULTS}/models/{{task}}/history.csv", task=TASKS),
        predictions=expand(f"{RESULTS}/models/{{task}}/predictions.tsv", task=TASKS),
        splits=expand(f"{RESULTS}/splits/{{task}}.tsv", task=TASKS),
        audits=expand(f"{RESULTS}/splits/{{task}}_audit.json", task=TASKS),
        clips=all_clip_files,
        tracks=lambda wildcards: expand(
            f"{RESULTS}/tracks/{{sample}}_tracks.tsv", sample=sample_ids()
        ),
        detections=lambda wildcards: expand(
            f"{RESULTS}/tracks/{{sample}}.parquet", sample=sample_ids()
        ),
        backgrounds=lambda wildcards: expand(
            f"{RESULTS}/background/{{sample}}.npz", sample=sample_ids()
        ),
        ingest=lambda wildcards: expand(
            f"{RESULTS}/ingest/{{sample}}.json", sample=sample_ids()
        ),
        truth=truth_files,
    output:
        html=report(
            f"{REPORT}/index.html",
            caption="../report/report_html.rst",
            category="Report",
            labels={"file": "index.html"},
        ),
        table_csv=report(
            f"{REPORT}/table1.csv",
            caption="../report/table1.rst",
            category="Table 1",
            labels={"table": "Table 1"},
        ),
        table_md=f"{REPORT}/table1.md",
        table_json=f"{REPORT}/table1.json",
        ablations=report(
            f"{REPORT}/ablations.csv",
            caption="../report/ablations.rst",
            category="Table 1",
            labels={"table": "ablations"},
        ),
        learning_curves=report_figure("learning_curves", "learning curves"),
        confusion_matrices=report_figure("confusion_matrices", "confusion matrices"),
        roc_curves=report_figure("roc_curves", "ROC curves"),
        per_donor=report_figure("per_donor_accuracy", "per-donor accuracy"),
        pipeline=report_figure("pipeline_panels", "pipeline panels"),
        examples=report_figure("example_clips", "example clips"),
        confounders=report_figure("confounder_check", "confounder check"),
    log:
        f"{RESULTS}/logs/render_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/render_report.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    params:
        config=config,
        # the results folder, derived from the output so no path is hard-coded
        results=lambda wildcards, output: str(Path(output.html).parent.parent),
    script:
        "../scripts/render_report.py"
