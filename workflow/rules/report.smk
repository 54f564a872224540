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
        ingest=lambda wildcards: expand(
            f"{RESULTS}/ingest/{{sample}}.json", sample=sample_ids()
        ),
    output:
        html=f"{RESULTS}/report/index.html",
        table_csv=report(
            f"{RESULTS}/report/table1.csv",
            caption="../report/table1.rst",
            category="Table 1",
        ),
        table_md=f"{RESULTS}/report/table1.md",
        table_json=f"{RESULTS}/report/table1.json",
        ablations=report(
            f"{RESULTS}/report/ablations.csv",
            caption="../report/ablations.rst",
            category="Table 1",
        ),
        figures=report(
            directory(f"{RESULTS}/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
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
