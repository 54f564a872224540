"""The workflow as code: lint, formatting, and the agreement of dvc.yaml with Snakemake.

Snakemake is the one pipeline graph; dvc.yaml only wraps coarse targets. These tests
resolve both graphs without running anything and check that every file a Snakemake rule
writes is declared by exactly one DVC stage, the stage whose command runs that rule, and
that DVC declares nothing Snakemake does not make.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE_HEADER = "sample\tpath\tdonor\tcondition\tfocus\tsession\tfps\tum_per_px\ttruth"


def run(args: list[str], cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def test_snakemake_lint_is_clean():
    result = run([str(BIN / "snakemake"), "--lint", "--cores", "1", "--nolock"])
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefmt_leaves_rules_unchanged():
    run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"])


def test_ruff_is_clean():
    run([str(BIN / "ruff"), "check", "--no-cache", "src", "tests", "workflow", "benchmarks"])


def test_every_rule_has_a_log_and_heavy_rules_a_benchmark():
    targets = {"all", "preprocess_all", "train_all", "predict_all"}  # aggregate targets
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        blocks = path.read_text().split("\nrule ")[1:] + path.read_text().split("\ncheckpoint ")[1:]
        for block in blocks:
            name = block.split(":", 1)[0].strip()
            body = block.split("\nrule ", 1)[0]
            if name in targets:
                continue
            assert "\n    log:" in body, f"{path.name}: rule {name} has no log"
            if name not in {"split_task"}:
                assert "\n    benchmark:" in body, f"{path.name}: rule {name} has no benchmark"


def snakemake_summary(tmp_path: Path, extra_config: list[str]) -> dict[str, str]:
    """Output file -> rule, for the whole DAG, without running anything."""
    result = run(
        [
            str(BIN / "snakemake"), "--dry-run", "--summary", "--cores", "1", "--nolock",
            "--config", *extra_config,
        ]
    )
    outputs = {}
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] not in ("", "output_file"):
            outputs[str(PurePosixPath(Path(fields[0]).resolve().relative_to(REPO)))] = fields[2]
    return outputs


@pytest.fixture(scope="module")
def snakemake_outputs(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("sheet")
    rows = []
    for index, condition in enumerate(["native", "DA", "FA", "GA"]):
        (folder / f"v{index}.avi").write_bytes(b"")
        (folder / f"t{index}.tsv").write_bytes(b"")
        rows.append(f"S{index}\tv{index}.avi\tD{index}\t{condition}\tin\tday1\t5000\t0.29"
                    f"\tt{index}.tsv")
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join([SAMPLE_HEADER, *rows]) + "\n")
    # placeholder files: the study checks (rbcflow.study) would rightly refuse them
    outputs = snakemake_summary(folder, [f"samples={sheet}", "study={'enabled': False}"])
    # The simulated-data mode adds the checkpoint that writes the demo data.
    simulated = snakemake_summary(folder, ["samples="])
    outputs.update({f: r for f, r in simulated.items() if r == "simulate_dataset"})
    return outputs


@pytest.fixture(scope="module")
def dvc_stages() -> dict[str, dict]:
    """DVC stage name -> {'rules': allowed Snakemake rules, 'outs': declared outs}."""
    from dvc.repo import Repo

    stages = {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            words = shlex.split(stage.cmd)
            assert words[0] == "snakemake", f"stage {stage.addressing} must run Snakemake"
            start = words.index("--allowed-rules") + 1
            end = words.index("--", start)
            stages[stage.addressing] = {
                "rules": set(words[start:end]),
                "targets": words[end + 1 :],
                "outs": [str(PurePosixPath(o.def_path)) for o in stage.outs],
            }
    return stages


def covers(out: str, path: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def test_each_snakemake_output_is_declared_by_exactly_one_dvc_stage(
    snakemake_outputs, dvc_stages
):
    assert len(snakemake_outputs) > 20, snakemake_outputs
    for path, rule in snakemake_outputs.items():
        owners = [
            name
            for name, stage in dvc_stages.items()
            if any(covers(out, path) for out in stage["outs"])
        ]
        assert len(owners) == 1, f"{path} (rule {rule}) is declared by DVC stages {owners}"
        assert rule in dvc_stages[owners[0]]["rules"], (
            f"{path} is made by rule {rule}, but DVC stage {owners[0]} does not run that rule"
        )


def test_dvc_declares_nothing_snakemake_does_not_make(snakemake_outputs, dvc_stages):
    for name, stage in dvc_stages.items():
        for out in stage["outs"]:
            assert any(covers(out, path) for path in snakemake_outputs), (
                f"DVC stage {name} declares {out}, which no Snakemake rule writes"
            )


def test_dvc_stage_targets_are_snakemake_targets(snakemake_outputs, dvc_stages):
    rules = set(snakemake_outputs.values())
    for name, stage in dvc_stages.items():
        for target in stage["targets"]:
            assert target in snakemake_outputs or target in {"preprocess_all", "train_all"}, (
                f"DVC stage {name} asks Snakemake for {target}, which no rule makes"
            )
        # the extra-model rules run only when train.models lists more than one model
        optional = {"preprocess_all", "train_extra_model", "evaluate_extra_model"}
        assert stage["rules"] - optional <= rules, name


def test_one_train_stage_per_configured_task(dvc_stages):
    tasks = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["tasks"]
    train_stages = sorted(name for name in dvc_stages if name.startswith("train@"))
    assert len(train_stages) == len(tasks)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed")
def test_config_yaml_spells_out_every_key_dvc_tracks():
    """DVC tracks params by reading config/config.yaml: a key left to the schema's default
    would be invisible to it, so the shipped config must name every key."""
    from rbcflow.config import load_schema

    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = load_schema("config")

    def missing(schema_props: dict, values: dict, prefix: str = "") -> list[str]:
        out = []
        for key, sub in schema_props.items():
            if key not in values:
                out.append(prefix + key)
            elif sub.get("type") == "object" and "properties" in sub:
                out += missing(sub["properties"], values[key], prefix + key + ".")
        return out

    assert missing(schema["properties"], shipped) == []


def _rule_blocks() -> dict[str, tuple[Path, str]]:
    """Rule name -> (file, body) of every rule and checkpoint of the workflow."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        for match in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:    .*\n|\n)*)", text,
                                 re.MULTILINE):
            blocks[match.group(1)] = (path, match.group(2))
    return blocks


def _module_file(name: str) -> Path | None:
    path = REPO / "src" / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _rbcflow_imports(path: Path) -> set[str]:
    """Every rbcflow module a file imports, at the top or inside a function."""
    text = path.read_text()
    if path.suffix != ".py":  # Snakemake files are not Python: read their import lines
        found = re.findall(r"^\s*from (rbcflow[\w.]*) import \(?([\w,\s]+?)\)?$", text,
                           re.MULTILINE)
        return ({module for module, _ in found}
                | {f"{module}.{name.strip()}" for module, names in found
                   for name in names.split(",") if name.strip()})
    names = set()
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] == "rbcflow"}


def _code_closure(start: list[Path]) -> set[Path]:
    """The files of ``start`` and every module of the package they import, transitively."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _rbcflow_imports(path):
            parts = name.split(".")
            for k in range(1, len(parts) + 1):
                module = _module_file(".".join(parts[:k]))
                if module is not None and module not in seen:
                    todo.append(module)
    return seen


def test_dvc_code_deps_cover_everything_their_rules_import(dvc_stages):
    """Each stage's code deps are derived from what its rules run: the rule files, the
    scripts, and every module those import (and the schemas the config module reads)."""
    from dvc.repo import Repo

    blocks = _rule_blocks()
    with Repo(str(REPO)) as repo:
        declared = {s.addressing: [str(PurePosixPath(d.def_path)) for d in s.deps]
                    for s in repo.index.stages}
    common = REPO / "workflow" / "rules" / "common.smk"
    for name, stage in dvc_stages.items():
        needed: set[Path] = set()
        for rule in stage["rules"]:
            if rule not in blocks:
                continue
            path, body = blocks[rule]
            scripts = re.findall(r'script:\n\s+"([^"]+)"', body)
            files = [path, common] + [(path.parent / s).resolve() for s in scripts]
            needed |= _code_closure(files)
        if REPO / "src" / "rbcflow" / "config.py" in needed:
            needed.add(REPO / "workflow" / "schemas" / "config.schema.yaml")
        for path in sorted(needed):
            relative = str(PurePosixPath(path.relative_to(REPO)))
            if relative == "Snakefile":
                continue
            assert any(covers(dep, relative) for dep in declared[name]), (
                f"DVC stage {name} runs code from {relative} but does not list it in deps"
            )
