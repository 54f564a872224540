# Per task: donor-grouped split, training, evaluation (ablations included). Every model
# of train.models is trained on the task's one split: the first (the task's model) in
# models/<task>/, the others in models/<task>/extra/<model>/ (rbcflow.layout).

ABLATIONS = config["evaluate"]["ablations"]
BASELINE_OUTPUT = (
    [f"{RESULTS}/models/{{task}}/baseline_frame.keras"] if ABLATIONS else []
)
EXTRA_MODELS = TRAIN_MODELS[1:]
# The list itself is left out of the models' params: adding a model to compare does not
# retrain the others.
TRAIN_PARAMS = {key: value for key, value in config["train"].items() if key != "models"}
EXTRA = f"{RESULTS}/models/{{task}}/extra/{{model}}"


wildcard_constraints:
    model="|".join(EXTRA_MODELS) or "(?!)",


rule split_task:
    input:
        preprocessed=task_batch_dirs,
    output:
        split=f"{RESULTS}/splits/{{task}}.tsv",
        audit=f"{RESULTS}/splits/{{task}}_audit.json",
    log:
        f"{LOGS}/split_task/{{task}}.log",
    # with its training's priority: the split is what the training waits for
    priority: task_priority
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
        main=f"{LOGS}/train_model/{{task}}.log",
        # seconds, clips per second, device, host: facts of this run, kept out of results/
        runtime=f"{LOGS}/train_model/{{task}}.runtime.json",
    benchmark:
        f"{LOGS}/benchmarks/train_model/{{task}}.tsv"
    # largest task first (task_priority in common.smk)
    priority: task_priority
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=6000,
    params:
        clips=task_clip_files,
        train=TRAIN_PARAMS,
        model=TRAIN_MODELS[0],
        ablations=ABLATIONS,
        seed=config["seed"],
    script:
        "../scripts/train_model.py"


# The other models of train.models: trained and evaluated as the task's model, on its
# split; the ablations are the task's model's (its baseline is not trained again).
use rule train_model as train_extra_model with:
    output:
        model=f"{EXTRA}/model.keras",
        history=f"{EXTRA}/history.csv",
        summary=f"{EXTRA}/train_summary.json",
    log:
        main=f"{LOGS}/train_model/{{task}}/extra/{{model}}.log",
        runtime=f"{LOGS}/train_model/{{task}}/extra/{{model}}.runtime.json",
    benchmark:
        f"{LOGS}/benchmarks/train_model/{{task}}/extra/{{model}}.tsv"
    params:
        clips=task_clip_files,
        train=TRAIN_PARAMS,
        model=lambda wildcards: wildcards.model,
        ablations=False,
        seed=config["seed"],


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
        saliency=f"{RESULTS}/models/{{task}}/saliency.npy",
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


use rule evaluate_model as evaluate_extra_model with:
    input:
        split=rules.split_task.output.split,
        preprocessed=task_batch_dirs,
        model=rules.train_extra_model.output.model,
        history=rules.train_extra_model.output.history,
        summary=rules.train_extra_model.output.summary,
    output:
        metrics=f"{EXTRA}/metrics.json",
        predictions=f"{EXTRA}/predictions.tsv",
        saliency=f"{EXTRA}/saliency.npy",
    log:
        f"{LOGS}/evaluate_model/{{task}}/extra/{{model}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_model/{{task}}/extra/{{model}}.tsv"
    params:
        clips=task_clip_files,
        task=lambda wildcards: TASKS[wildcards.task],
        evaluate={**config["evaluate"], "ablations": False},
        seed=config["seed"],


# The task's models side by side (always written: DVC tracks the extra/ folder).
rule list_task_models:
    input:
        main=rules.evaluate_model.output.metrics,
        extra=lambda wildcards: expand(
            rules.evaluate_extra_model.output.metrics,
            task=wildcards.task,
            model=EXTRA_MODELS,
        ),
    output:
        table=f"{RESULTS}/models/{{task}}/extra/models.tsv",
    log:
        f"{LOGS}/list_task_models/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/list_task_models/{{task}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    params:
        models=TRAIN_MODELS,
    script:
        "../scripts/list_task_models.py"
