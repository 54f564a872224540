# The built-in demo dataset: used when the config names no sample sheet. A checkpoint,
# because the sample names are known only once the sheet exists.


checkpoint simulate_dataset:
    output:
        sheet=f"{config['simulate']['outdir']}/samples.tsv",
    log:
        f"{LOGS}/simulate_dataset.log",
    benchmark:
        f"{LOGS}/benchmarks/simulate_dataset.tsv"
    conda:
        "../../envs/rbcflow.yaml"
    # Recordings rendered in parallel processes (seeded per recording: the files do not
    # depend on the number). Fixed rather than workflow.cores, which a remote executor
    # (--executor slurm, no --cores) leaves unset; a local run caps it at --cores.
    threads: 8
    params:
        outdir=lambda wildcards, output: str(Path(output.sheet).parent),
        preset=config["simulate"]["preset"],
        seed=config["simulate"]["seed"],
        effect_size=config["simulate"]["effect_size"],
        video_format=config["simulate"]["video_format"],
    script:
        "../scripts/simulate_dataset.py"
