# Per-recording preprocessing: one job per sample, so `--cores N` runs N videos at once.


rule ingest_video:
    input:
        video=video_path,
    output:
        meta=f"{RESULTS}/ingest/{{sample}}.json",
        contact_sheet=f"{RESULTS}/ingest/{{sample}}.png",
    log:
        f"{RESULTS}/logs/ingest_video/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest_video/{{sample}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        info=sample_info,
        allow_truncated=config["ingest"]["allow_truncated"],
        fps_tolerance=config["ingest"]["fps_tolerance"],
    script:
        "../scripts/ingest_video.py"


rule model_background:
    input:
        video=video_path,
        meta=rules.ingest_video.output.meta,
    output:
        background=f"{RESULTS}/background/{{sample}}.npz",
        qc=report(
            f"{RESULTS}/background/{{sample}}_qc.png",
            caption="../report/background_qc.rst",
            category="Preprocessing",
            labels={"sample": "{sample}", "figure": "background QC"},
        ),
    log:
        f"{RESULTS}/logs/model_background/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/model_background/{{sample}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        background=config["background"],
        detect=config["detect"],
        seed=config["seed"],
    script:
        "../scripts/model_background.py"


rule track_cells:
    input:
        video=video_path,
        meta=rules.ingest_video.output.meta,
        background=rules.model_background.output.background,
    output:
        tracks=f"{RESULTS}/tracks/{{sample}}.parquet",
        summary=f"{RESULTS}/tracks/{{sample}}_tracks.tsv",
    log:
        f"{RESULTS}/logs/track_cells/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/track_cells/{{sample}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        info=sample_info,
        detect=config["detect"],
        track=config["track"],
    script:
        "../scripts/track_cells.py"


rule cut_clips:
    input:
        video=video_path,
        meta=rules.ingest_video.output.meta,
        background=rules.model_background.output.background,
        tracks=rules.track_cells.output.tracks,
        summary=rules.track_cells.output.summary,
    output:
        clips=f"{RESULTS}/clips/{{sample}}.h5",
        qc=f"{RESULTS}/clips/{{sample}}_qc.tsv",
    log:
        f"{RESULTS}/logs/cut_clips/{{sample}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cut_clips/{{sample}}.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        info=sample_info,
        clips=config["clips"],
        detect=config["detect"],
    script:
        "../scripts/cut_clips.py"
