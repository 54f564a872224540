# Configuration, sample sheet and input functions. The only Python of the workflow.
import os
from pathlib import Path

from rbcflow.batches import BATCH_PATTERN, plan_batches, recording_bytes
from rbcflow.config import (
    ConfigError,
    load_sample_sheet,
    task_classes,
    task_label_map,
    validate_config,
)
from rbcflow.layout import (
    PIPELINE_FILES,
    SAMPLE_FILES,
    model_paths,
    output_paths,
    task_paths,
    trained_models,
)
from rbcflow.study import check_study
from snakemake.exceptions import IncompleteCheckpointException

# Validate (and complete with defaults) before any job runs; one message lists every
# problem. The completed config replaces Snakemake's, so rules see every default.
try:
    _validated = validate_config(config, source="config")
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

RESULTS = config["results"]
# job logs and benchmarks: facts of one run (times, host), kept out of results/ and DVC
LOGS = config["logs"]
SIMULATED = not config["samples"]
TASKS = {task["name"]: task for task in config["tasks"]}
# train.models, or [train.model]: the first is each task's model (rbcflow.layout)
TRAIN_MODELS = trained_models(config["train"])

# A user's sample sheet is validated now, before anything runs; the simulated one exists
# only after the simulate_dataset checkpoint and is validated when it is first read.
if not SIMULATED:
    try:
        _USER_SHEET = load_sample_sheet(
            config["samples"], conditions=config["conditions"]
        )
        if config["study"]["enabled"]:
            check_study(
                _USER_SHEET,
                config,
                source=config["samples"],
                open_files=config["study"]["open_files"],
            )
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


wildcard_constraints:
    sample=r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    task=r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    batch=BATCH_PATTERN,


def sample_sheet_path(wildcards=None):
    if SIMULATED:
        return checkpoints.simulate_dataset.get().output.sheet
    return config["samples"]


_SHEET_CACHE = {}


def sample_sheet():
    if not SIMULATED:
        return _USER_SHEET
    # Input functions ask for the sheet once per job; read and validate it once per
    # version of the file, not hundreds of times.
    path = sample_sheet_path()
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _SHEET_CACHE:
        try:
            _SHEET_CACHE[key] = load_sample_sheet(path, conditions=config["conditions"])
        except ConfigError as error:
            raise WorkflowError(str(error)) from None
    return _SHEET_CACHE[key]


def sample_ids():
    return list(sample_sheet()["sample"])


# The sections of the config the per-recording chain reads (rbcflow.preprocess).
CHAIN_CONFIG = {
    key: config[key]
    for key in ("seed", "ingest", "background", "detect", "track", "clips", "qc")
}
_BATCH_CACHE = {}


def batches():
    """Batch name -> its samples (rbcflow.batches: consecutive rows up to batch_mb)."""
    sheet = sample_sheet()
    key = id(sheet)
    if key not in _BATCH_CACHE:
        sizes = [
            (s, recording_bytes(p)) for s, p in zip(sheet["sample"], sheet["path"])
        ]
        _BATCH_CACHE[key] = plan_batches(sizes, config["preprocess"]["batch_mb"])
    return _BATCH_CACHE[key]


def batch_of(sample):
    for name, members in batches().items():
        if sample in members:
            return name
    raise WorkflowError(f"sample {sample!r} is not in {sample_sheet_path()}")


def batch_dir(batch):
    return f"{RESULTS}/preprocess/{batch}"


def sample_file(sample, role):
    """Path of one of a recording's files (role as in rbcflow.preprocess.output_paths)."""
    return str(output_paths(batch_dir(batch_of(sample)), sample)[role])


def batch_videos(wildcards):
    return [sample_sheet().loc[s, "path"] for s in batches()[wildcards.batch]]


def batch_rows(wildcards):
    """The sample-sheet rows of a batch as plain Python values (for params)."""
    sheet = sample_sheet()
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in sheet.loc[s].items()}
        for s in batches()[wildcards.batch]
    ]


def all_batch_dirs(wildcards=None):
    return [batch_dir(name) for name in batches()]


def task_samples(task_name):
    """Samples whose condition takes part in a task."""
    task = TASKS[task_name]
    wanted = set(task_label_map(task))
    sheet = sample_sheet()
    return list(sheet.loc[sheet["condition"].isin(wanted), "sample"])


def task_priority(wildcards):
    """Scheduling priority of a task's split and training: the largest task first.

    Training is most of the workflow's time and each training job holds one core, so
    the order decides how well the cores stay busy: started longest first, the short
    trainings and the small jobs after them fill the cores at the end instead of one
    long training running alone (measured on the demo: the smallest task trained last,
    by itself, for over a minute). A task's cost grows with its recordings, then with
    its classes (the four-class Treatment task against the binary Mix on the same
    recordings). Before the simulated sample sheet exists only the classes count; the
    priorities are computed again once it does.
    """
    classes = len(task_classes(TASKS[wildcards.task]))
    try:
        recordings = len(task_samples(wildcards.task))
    except IncompleteCheckpointException:
        recordings = 0
    return 1000 * recordings + classes


def task_batch_dirs(wildcards):
    return sorted({batch_dir(batch_of(s)) for s in task_samples(wildcards.task)})


def task_clip_files(wildcards):
    return [sample_file(s, "clips") for s in task_samples(wildcards.task)]


def truth_samples():
    sheet = sample_sheet()
    if "truth" not in sheet.columns:
        return []
    return [s for s, t in zip(sheet["sample"], sheet["truth"]) if t]


def batch_truth_samples(batch):
    return [s for s in batches()[batch] if s in set(truth_samples())]


def batch_truth_files(wildcards):
    sheet = sample_sheet()
    return [sheet.loc[s, "truth"] for s in batch_truth_samples(wildcards.batch)]


def batch_truth_recordings(wildcards):
    """Sample, tracks, summary and truth of every recording of a batch with a truth."""
    sheet = sample_sheet()
    return [
        {
            "sample": s,
            "tracks": sample_file(s, "tracks"),
            "tracks_summary": sample_file(s, "tracks_summary"),
            "truth": sheet.loc[s, "truth"],
        }
        for s in batch_truth_samples(wildcards.batch)
    ]


def tracking_dirs(wildcards=None):
    return [f"{RESULTS}/tracking/{b}" for b in batches() if batch_truth_samples(b)]


def tracking_file(sample):
    return f"{RESULTS}/tracking/{batch_of(sample)}/{sample}.json"


def pipeline_sample():
    """The recording the report's pipeline panels show (config or the sheet's first)."""
    wanted = config["report"]["pipeline_sample"]
    if wanted and wanted not in sample_sheet().index:
        raise WorkflowError(
            f"report.pipeline_sample {wanted!r} is not in {sample_sheet_path()}"
        )
    return wanted or sample_sheet()["sample"].iloc[0]


REPORT = f"{RESULTS}/report"


def report_files(lock_file):
    """Every file the report reads, by role (rbcflow.report.inputs.ReportInputs)."""
    samples = {
        s: {role: sample_file(s, role) for role in SAMPLE_FILES} for s in sample_ids()
    }
    shown = pipeline_sample()
    pipeline = {"sample": shown, "video": sample_sheet().loc[shown, "path"]}
    pipeline.update({role: sample_file(shown, role) for role in PIPELINE_FILES[1:]})
    return {
        "tasks": {
            t: {k: str(v) for k, v in task_paths(RESULTS, t).items()} for t in TASKS
        },
        "samples": samples,
        "extra_models": {
            t: {
                m: {k: str(v) for k, v in model_paths(RESULTS, t, m).items()}
                for m in TRAIN_MODELS[1:]
            }
            for t in TASKS
        },
        "tracking": {s: tracking_file(s) for s in truth_samples()},
        "pipeline": pipeline,
        "lock_file": str(lock_file),
    }


def report_figure(name, label):
    return report(
        f"{REPORT}/figures/{name}.png",
        caption=f"../report/{name}.rst",
        category="Figures",
        labels={"figure": label},
    )
