# Per-recording chain (rbcflow.preprocess): ingest, background, tracks and clips in one
# job per batch of consecutive recordings (rbcflow.batches), so short triggered clips
# do not each pay a job's start-up; `--cores N` runs N batches at once.


rule preprocess_batch:
    input:
        videos=batch_videos,
    output:
        folder=directory(f"{RESULTS}/preprocess/{{batch}}"),
    log:
        f"{LOGS}/preprocess_batch/{{batch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/preprocess_batch/{{batch}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        rows=batch_rows,
        chain=CHAIN_CONFIG,
    script:
        "../scripts/preprocess_batch.py"


# Tracking accuracy against the simulator's truth, for the recordings that have one
# (one job per batch: the scoring library's import costs more than a short recording).
rule evaluate_tracking:
    input:
        preprocessed=rules.preprocess_batch.output.folder,
        truth=batch_truth_files,
    output:
        scores=directory(f"{RESULTS}/tracking/{{batch}}"),
    log:
        f"{LOGS}/evaluate_tracking/{{batch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_tracking/{{batch}}.tsv"
    # only the report waits for these: they fill a core left idle (the last batches,
    # the last training) instead of delaying the splits and trainings
    priority: -1
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    params:
        recordings=batch_truth_recordings,
        max_distance_px=config["evaluate"]["truth_max_distance_px"],
    script:
        "../scripts/evaluate_tracking.py"
