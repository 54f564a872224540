# rbcflow: raw microflow video -> per-cell clips -> one classifier per task -> Table 1.
# All logic lives in the rbcflow package; rules are thin. See docs/architecture.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        rules.render_report.output,
        expand(rules.bundle_model.output.bundle, task=TASKS),


# Coarse targets, one per DVC stage (dvc.yaml): DVC wraps these, Snakemake owns the graph.
rule preprocess_all:
    input:
        all_batch_dirs,


rule train_all:
    input:
        expand(f"{RESULTS}/models/{{task}}/metrics.json", task=TASKS),
