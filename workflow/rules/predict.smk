# Applying the trained models: one bundle per task (what `rbcflow predict` needs beside
# model.keras), and, with a `predict:` block naming a sample sheet of unlabelled
# recordings, every cell's class and each sample's composition per task.
from rbcflow.predict import predict_tasks, read_predict_sheet

PREDICT = config["predict"]
try:
    PREDICT_TASKS = predict_tasks(PREDICT, list(TASKS))
    PREDICT_SHEET = read_predict_sheet(PREDICT["samples"]) if PREDICT_TASKS else None
except ValueError as error:
    raise WorkflowError(str(error)) from None


rule bundle_model:
    input:
        split=rules.split_task.output.split,
        preprocessed=task_batch_dirs,
        model=rules.train_model.output.model,
        summary=rules.train_model.output.summary,
        metrics=rules.evaluate_model.output.metrics,
    output:
        bundle=f"{RESULTS}/models/{{task}}/bundle.json",
    log:
        f"{LOGS}/bundle_model/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/bundle_model/{{task}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    params:
        clips=task_clip_files,
        task=lambda wildcards: TASKS[wildcards.task],
        chain=CHAIN_CONFIG,
    script:
        "../scripts/bundle_model.py"


rule predict_samples:
    input:
        bundle=rules.bundle_model.output.bundle,
        model=rules.train_model.output.model,
        sheet=lambda wildcards: PREDICT["samples"],
        videos=lambda wildcards: list(PREDICT_SHEET["path"]),
    output:
        cells=f"{RESULTS}/predict/{{task}}/cells.tsv",
        samples=f"{RESULTS}/predict/{{task}}/samples.tsv",
        html=f"{RESULTS}/predict/{{task}}/index.html",
        preprocessed=directory(f"{RESULTS}/predict/{{task}}/preprocess"),
    log:
        f"{LOGS}/predict_samples/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/predict_samples/{{task}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        bootstrap=PREDICT["bootstrap"],
        example_clips=PREDICT["example_clips"],
        seed=config["seed"],
    script:
        "../scripts/predict_samples.py"


rule predict_all:
    input:
        expand(rules.predict_samples.output.samples, task=PREDICT_TASKS),
