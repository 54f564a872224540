# The Table-1 report: tables, figures and one self-contained HTML page. Its inputs are
# exactly the files it reads (report_files() in common.smk lists them by role).


rule render_report:
    input:
        sheet=sample_sheet_path,
        metrics=expand(f"{RESULTS}/models/{{task}}/metrics.json", task=TASKS),
        histories=expand(f"{RESULTS}/models/{{task}}/history.csv", task=TASKS),
        predictions=expand(f"{RESULTS}/models/{{task}}/predictions.tsv", task=TASKS),
        saliency=expand(f"{RESULTS}/models/{{task}}/saliency.npy", task=TASKS),
        models=expand(f"{RESULTS}/models/{{task}}/extra/models.tsv", task=TASKS),
        extra_models=expand(
            f"{RESULTS}/models/{{task}}/extra/{{model}}/{{name}}",
            task=TASKS,
            model=TRAIN_MODELS[1:],
            name=["metrics.json", "history.csv", "predictions.tsv", "saliency.npy"],
        ),
        splits=expand(f"{RESULTS}/splits/{{task}}.tsv", task=TASKS),
        audits=expand(f"{RESULTS}/splits/{{task}}_audit.json", task=TASKS),
        preprocessed=all_batch_dirs,
        tracking=tracking_dirs,
        pipeline_video=lambda wildcards: sample_sheet().loc[pipeline_sample(), "path"],
        lock_file="requirements/lock.txt",
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
        confounders=f"{REPORT}/confounders.csv",
        split_audit=f"{REPORT}/split_audit.csv",
        data_samples=f"{REPORT}/data_summary_samples.csv",
        data_conditions=f"{REPORT}/data_summary_conditions.csv",
        tracking=f"{REPORT}/tracking_accuracy.csv",
        saliency_table=f"{REPORT}/saliency.csv",
        provenance=f"{REPORT}/provenance.json",
        learning_curves=report_figure("learning_curves", "learning curves"),
        confusion_matrices=report_figure("confusion_matrices", "confusion matrices"),
        roc_curves=report_figure("roc_curves", "ROC curves"),
        per_donor=report_figure("per_donor_accuracy", "per-donor accuracy"),
        pipeline=report_figure("pipeline_panels", "pipeline panels"),
        examples=report_figure("example_clips", "example clips"),
        confounder_figure=report_figure("confounder_check", "confounder check"),
        saliency=report_figure("saliency", "Grad-CAM saliency"),
    log:
        f"{LOGS}/render_report.log",
    benchmark:
        f"{LOGS}/benchmarks/render_report.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    params:
        config=config,
        files=lambda wildcards, input: report_files(input.lock_file),
    script:
        "../scripts/render_report.py"
