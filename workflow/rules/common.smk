# Configuration, sample sheet and input functions. The only Python of the workflow.
import os
from pathlib import Path

from rbcflow.config import ConfigError, load_sample_sheet, validate_config

# Validate (and complete with defaults) before any job runs; one message lists every
# problem. The completed config replaces Snakemake's, so rules see every default.
try:
    _validated = validate_config(config, source="config")
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

RESULTS = config["results"]
SIMULATED = not config["samples"]
TASKS = {task["name"]: task for task in config["tasks"]}

# A user's sample sheet is validated now, before anything runs; the simulated one exists
# only after the simulate_dataset checkpoint and is validated when it is first read.
if not SIMULATED:
    try:
        _USER_SHEET = load_sample_sheet(
            config["samples"], conditions=config["conditions"]
        )
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


wildcard_constraints:
    sample=r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    task=r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",


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


def sample_row(wildcards):
    sheet = sample_sheet()
    if wildcards.sample not in sheet.index:
        raise WorkflowError(
            f"sample {wildcards.sample!r} is not in {sample_sheet_path()}"
        )
    return sheet.loc[wildcards.sample]


def video_path(wildcards):
    return sample_row(wildcards)["path"]


def sample_info(wildcards):
    """The sheet row of one sample as plain Python values (for params)."""
    row = sample_row(wildcards)
    return {
        key: (value.item() if hasattr(value, "item") else value)
        for key, value in row.items()
    }


def task_samples(task_name):
    """Samples whose condition takes part in a task."""
    task = TASKS[task_name]
    wanted = set(task["negative"]) | set(task["positive"])
    sheet = sample_sheet()
    return list(sheet.loc[sheet["condition"].isin(wanted), "sample"])


def task_clip_files(wildcards):
    return expand(f"{RESULTS}/clips/{{sample}}.h5", sample=task_samples(wildcards.task))


def all_clip_files(wildcards=None):
    return expand(f"{RESULTS}/clips/{{sample}}.h5", sample=sample_ids())


def truth_files(wildcards=None):
    sheet = sample_sheet()
    if "truth" not in sheet.columns:
        return []
    return [path for path in sheet["truth"] if path]


REPORT = f"{RESULTS}/report"


def report_figure(name, label):
    return report(
        f"{REPORT}/figures/{name}.png",
        caption=f"../report/{name}.rst",
        category="Figures",
        labels={"figure": label},
    )
