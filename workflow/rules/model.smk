# Per task: donor-grouped split, training, evaluation (ablations included).

ABLATIONS = config["evaluate"]["ablations"]
BASELINE_OUTPUT = (
    [f"{RESULTS}/models/{{task}}/baseline_frame.keras"] if ABLATIONS else []
)


rule split_task:
    input:
        preprocessed=task_batch_dirs,
    output:
        split=f"{RESULTS}/splits/{{task}}.tsv",
        audit=f"{RESULTS}/splits/{{task}}_audit.json",
    log:
        f"{LOGS}/split_task/{{task}}.log",
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    params:
        clips=task_clip_files,
        task=lambda wildcards: TASKS[wildcards.task],
        split=config["split"],
        seed=config["seed"],
    script:
        "../scripts/split_task.py"


# The single-frame baseline of the ablation table (the image-only approach the seed
# papers improved on) is trained in the same job, on the same split.
# One thread per job: these small networks gain nothing from a second intra-op thread
# (measured: CPU time equal to wall time with two), tasks train side by side instead,
# and the numbers do not depend on the machine's core count.
rule train_model:
    input:
        split=rules.split_task.output.split,
        preprocessed=task_batch_dirs,
    output:
        *BASELINE_OUTPUT,
        model=f"{RESULTS}/models/{{task}}/model.keras",
        history=f"{RESULTS}/models/{{task}}/history.csv",
        summary=f"{RESULTS}/models/{{task}}/train_summary.json",
    log:
        f"{LOGS}/train_model/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_model/{{task}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=6000,
    params:
        clips=task_clip_files,
        train=config["train"],
        ablations=ABLATIONS,
        seed=config["seed"],
    script:
        "../scripts/train_model.py"


rule evaluate_model:
    input:
        split=rules.split_task.output.split,
        preprocessed=task_batch_dirs,
        model=rules.train_model.output.model,
        history=rules.train_model.output.history,
        summary=rules.train_model.output.summary,
    output:
        metrics=f"{RESULTS}/models/{{task}}/metrics.json",
        predictions=f"{RESULTS}/models/{{task}}/predictions.tsv",
    log:
        f"{LOGS}/evaluate_model/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_model/{{task}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        clips=task_clip_files,
        task=lambda wildcards: TASKS[wildcards.task],
        evaluate=config["evaluate"],
        seed=config["seed"],
    script:
        "../scripts/evaluate_model.py"
