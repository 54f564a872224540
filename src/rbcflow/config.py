"""Configuration and sample sheet: loading and validation.

Both are validated before any job runs, and every problem is reported in one message
that names the file, the line and the column at fault.
"""

from __future__ import annotations

import copy
import functools
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# yaml, jsonschema and pandas are imported where they are used: `rbcflow --help` and a
# job's start would otherwise pay for them (pandas alone takes about 0.3 s to import).
if TYPE_CHECKING:
    import pandas as pd

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

SAMPLE_COLUMNS = ["sample", "path", "donor", "condition", "focus", "session", "fps", "um_per_px"]
OPTIONAL_SAMPLE_COLUMNS = ["geometry", "mode", "truth"]
NUMERIC_SAMPLE_COLUMNS = ["fps", "um_per_px"]


class ConfigError(ValueError):
    """A configuration or sample sheet is invalid; the message lists every problem."""


def load_schema(name: str) -> dict:
    """One of the packaged JSON schemas (``config`` or ``samples``), a fresh copy."""
    return copy.deepcopy(_load_schema(name))


@functools.lru_cache(maxsize=4)
def _load_schema(name: str) -> dict:
    import yaml

    # the packaged schema through libyaml where it is built in (about 7 ms instead of 45
    # for the config schema, once per process); the same objects as yaml.safe_load
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(SCHEMA_DIR / f"{name}.schema.yaml", encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def _extend_with_defaults(validator_class):
    """A validator that fills in ``default`` values while it validates (jsonschema FAQ)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    import jsonschema

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


@functools.lru_cache(maxsize=1)
def _default_filling_validator():
    import jsonschema

    return _extend_with_defaults(jsonschema.Draft202012Validator)


def _schema_types(schema: Mapping) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def coerce_strings(value: Any, schema: Mapping) -> Any:
    """Values given as text where the schema wants numbers or booleans, converted.

    Snakemake's ``--config 'train={"epochs": 3}'`` hands nested values over as strings;
    a string that reads (as YAML) as a value of the type the schema asks for is taken as
    that value, and anything else is left for the validator to report.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: coerce_strings(v, properties.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_strings(v, schema.get("items", {})) for v in value]
    wanted = _schema_types(schema)
    if not isinstance(value, str) or not wanted & {"number", "integer", "boolean", "null"}:
        return value
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    matches = {
        "integer": isinstance(parsed, int) and not isinstance(parsed, bool),
        "number": isinstance(parsed, int | float) and not isinstance(parsed, bool),
        "boolean": isinstance(parsed, bool),
        "null": parsed is None,
    }
    return parsed if any(matches.get(t, False) for t in wanted) else value


def _error_location(error) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(top level)"


def _error_message(error) -> str:
    """jsonschema's message, or the key's description where that explains more.

    A ``not`` (values a key refuses, such as ``split.cv_folds`` 1 and 2) reads as
    "2 should not be valid under {'enum': [1, 2]}"; the description says why.
    """
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "not" and description:
        return f"{error.instance!r} is not allowed: {description}"
    return error.message


def non_finite_numbers(value: Any, location: str = "") -> list[str]:
    """Locations (``a/b/0``) of the NaN and infinite numbers inside a nested value.

    YAML reads ``.nan`` and ``.inf`` as floats, and ``exclusiveMinimum`` lets NaN through
    (every comparison with NaN is false), so the schema alone cannot refuse them.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return [location or "(top level)"]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return []
    found: list[str] = []
    for key, item in items:
        found.extend(non_finite_numbers(item, f"{location}/{key}" if location else str(key)))
    return found


def validate_config(config: Mapping[str, Any] | None, source: str = "config") -> dict:
    """Validate a configuration mapping, fill in defaults and return the completed copy.

    Raises
    ------
    ConfigError
        Listing every schema violation and every cross-key inconsistency.
    """
    schema = load_schema("config")
    completed = coerce_strings(copy.deepcopy(dict(config or {})), schema)
    validator = _default_filling_validator()(schema)
    # Two passes: the first fills nested defaults ({} -> full section), the second
    # validates the filled-in values themselves.
    list(validator.iter_errors(completed))
    problems = [
        f"{source}: {_error_location(err)}: {_error_message(err)}"
        for err in sorted(validator.iter_errors(completed), key=lambda e: list(e.absolute_path))
    ]
    problems.extend(f"{source}: {where}: must be a finite number"
                    for where in non_finite_numbers(completed))
    if not problems:
        problems.extend(_cross_check_config(completed, source))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return completed


def task_classes(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The task's classes in label order: ``[{name, conditions}]``.

    A task with ``classes`` lists them itself; the two-class form ``negative`` /
    ``positive`` gives the classes ``negative`` (label 0) and ``positive`` (label 1).
    """
    if task.get("classes"):
        return [{"name": str(c["name"]), "conditions": list(c["conditions"])}
                for c in task["classes"]]
    return [{"name": "negative", "conditions": list(task["negative"])},
            {"name": "positive", "conditions": list(task["positive"])}]


def task_label_map(task: Mapping[str, Any]) -> dict[str, int]:
    """Condition -> label (the index of its class) for the task's conditions."""
    return {condition: label for label, spec in enumerate(task_classes(task))
            for condition in spec["conditions"]}


def is_multiclass(task: Mapping[str, Any]) -> bool:
    """Whether the task has more than two classes (two-class tasks keep their outputs)."""
    return len(task_classes(task)) > 2


def _task_problems(index: int, task: Mapping[str, Any], known: set[str],
                   source: str) -> list[str]:
    where, name = f"{source}: tasks/{index}", task["name"]
    if "classes" in task and ("negative" in task or "positive" in task):
        return [f"{where}: task {name!r} gives both classes and negative/positive; "
                "use one form"]
    if "classes" not in task and "negative" not in task:
        return [f"{where}: task {name!r} needs negative and positive, or classes"]
    problems = []
    if "classes" in task:
        sides = [(f"classes/{i}/conditions", c["conditions"])
                 for i, c in enumerate(task["classes"])]
        names = [c["name"] for c in task["classes"]]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{where}/classes: class name {duplicate!r} of task {name!r} "
                            "is used more than once")
    else:
        sides = [(side, task[side]) for side in ("negative", "positive")]
    for key, conditions in sides:
        for condition in conditions:
            if condition not in known:
                problems.append(f"{where}/{key}: condition {condition!r} of task {name!r} "
                                f"is not in conditions {sorted(known)}")
    classes_of = Counter(c for _, conditions in sides for c in set(conditions))
    shared = sorted(c for c, n in classes_of.items() if n > 1)
    if shared:
        what = "in more than one class" if "classes" in task else "on both sides"
        problems.append(f"{where}: conditions {shared} are {what} of task {name!r}")
    return problems


def _cross_check_config(config: dict, source: str) -> list[str]:
    problems = []
    known = set(config["conditions"])
    names = [task["name"] for task in config["tasks"]]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{source}: tasks: task name {duplicate!r} is used more than once")
    for index, task in enumerate(config["tasks"]):
        problems.extend(_task_problems(index, task, known, source))
    split = config["split"]
    total = split["train"] + split["validation"] + split["test"]
    if split["cv_folds"] == 0 and not math.isclose(total, 1.0, abs_tol=1e-6):
        problems.append(
            f"{source}: split: train + validation + test must add up to 1, not {total:g}"
        )
    if config["clips"]["frame_stop"] <= config["clips"]["frame_start"]:
        problems.append(f"{source}: clips: frame_stop must be greater than frame_start")
    return problems


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read a YAML config (or none: all defaults), apply overrides, validate."""
    raw: dict = {}
    source = "defaults"
    if path is not None:
        import yaml

        source = str(path)
        try:
            with open(path, encoding="utf-8") as handle:
                raw = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    if overrides:
        raw = _deep_merge(raw, overrides)
    return validate_config(raw, source=source)


def _deep_merge(base: Mapping, update: Mapping) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _as_number(text: str) -> float | str:
    """A sheet cell as a number, or the text itself when it is not a finite number.

    ``float()`` also reads ``nan`` and ``inf``; neither is a JSON number, so they stay
    text and the schema's ``type: number`` refuses them.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return value if math.isfinite(value) else text


def check_sample_row(row: Mapping[str, Any], source: str) -> None:
    """Raise ``ConfigError`` listing every way one recording's description breaks the schema.

    For a row given on the command line (``rbcflow preprocess --focus ... --fps ...``),
    which no sample sheet checked: ``nan`` and ``inf`` are refused like in a sheet.
    """
    import jsonschema

    record = {key: value for key, value in row.items()
              if value is not None and not (key in OPTIONAL_SAMPLE_COLUMNS and value == "")}
    for key in NUMERIC_SAMPLE_COLUMNS:
        if isinstance(record.get(key), float) and not math.isfinite(record[key]):
            record[key] = str(record[key])
    validator = jsonschema.Draft202012Validator(load_schema("samples"))
    problems = [
        f"{source}: {'/'.join(map(str, error.absolute_path)) or '(row)'}: {error.message}"
        for error in sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    ]
    if len(problems) == 1:
        raise ConfigError(f"invalid recording description: {problems[0]}")
    if problems:
        raise ConfigError("invalid recording description:\n  " + "\n  ".join(problems))


def load_sample_sheet(
    path: str | Path,
    conditions: list[str] | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Read and validate a sample sheet; return it with ``path`` made absolute.

    Every problem is collected and reported at once as ``file line N, column C: ...``
    (line numbers count the header as line 1, as an editor shows them).
    """
    import jsonschema
    import pandas as pd

    path = Path(path)
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except FileNotFoundError:
        raise ConfigError(f"sample sheet not found: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as a tab-separated table: {exc}") from None

    problems: list[str] = []
    missing = [column for column in SAMPLE_COLUMNS if column not in sheet.columns]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)}; the sheet needs "
            f"{', '.join(SAMPLE_COLUMNS)} (tab-separated, one header line)"
        )
    if sheet.empty:
        raise ConfigError(f"{path}: the sample sheet has no rows")

    schema = load_schema("samples")
    validator = jsonschema.Draft202012Validator(schema)
    base = path.resolve().parent
    known = set(conditions) if conditions is not None else None
    seen: dict[str, int] = {}
    for index, row in sheet.iterrows():
        line = int(index) + 2
        record = {
            key: (_as_number(value) if key in NUMERIC_SAMPLE_COLUMNS else value)
            for key, value in row.items()
            if not (key in OPTIONAL_SAMPLE_COLUMNS and value == "")
        }
        for error in validator.iter_errors(record):
            column = error.absolute_path[0] if error.absolute_path else "?"
            value = record.get(column, "")
            problems.append(f"{path} line {line}, column {column}: {value!r}: {error.message}")
        sample = row["sample"]
        if sample in seen:
            problems.append(
                f"{path} line {line}, column sample: {sample!r} is already used on line "
                f"{seen[sample]}; sample IDs must be unique"
            )
        else:
            seen[sample] = line
        if known is not None and row["condition"] not in known:
            problems.append(
                f"{path} line {line}, column condition: {row['condition']!r} is not a known "
                f"condition ({', '.join(sorted(known))}); add it to the config's `conditions`"
            )
        for column in ("path", "truth"):
            if column not in sheet.columns or row[column] == "":
                continue
            resolved = (base / row[column]).resolve()
            if check_files and not resolved.exists():
                problems.append(f"{path} line {line}, column {column}: file not found: {resolved}")
    if problems:
        raise ConfigError(
            f"invalid sample sheet ({len(problems)} problem(s)):\n  " + "\n  ".join(problems)
        )

    sheet = sheet.copy()
    sheet["path"] = [str((base / p).resolve()) for p in sheet["path"]]
    if "truth" in sheet.columns:
        sheet["truth"] = [str((base / p).resolve()) if p else "" for p in sheet["truth"]]
    for column in NUMERIC_SAMPLE_COLUMNS:
        sheet[column] = sheet[column].astype(float)
    return sheet.set_index("sample", drop=False)
