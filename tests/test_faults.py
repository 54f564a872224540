"""Fault injection: bad inputs, failing disks, concurrent writers and interrupted runs.

Every case runs the real command (``rbcflow`` or ``snakemake``) in a subprocess and
asserts its exit code, its message (one line naming the file and the cause, no
traceback) and that nothing partial is left behind; the interrupted workflows also
that the recovery the README gives ("When something goes wrong") ends with the bytes of
an uninterrupted run. The bad inputs are made here, from one simulated recording. Disk
full and read-only folders need a small tmpfs (``mount``, as root); where it cannot be
mounted those cases are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from conftest import TINY_SEED
from project_copy import make_project, project_env

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FPS, UM_PER_PX = "1800", "0.2875"  # the tiny preset's triggered clips
SHORT = "D01_FA_in_t1"  # a triggered clip of 110 frames, 800 x 132 px


def rbcflow(*args: str | Path, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "rbcflow"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def rbcflow_here(*args: str | Path) -> subprocess.CompletedProcess:
    """The command run in this process, for the checks that end before any work starts
    (no interpreter start-up per case)."""
    from typer.testing import CliRunner

    from rbcflow.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def errors(result: subprocess.CompletedProcess) -> list[str]:
    """The lines of stderr that are not progress logging."""
    return [line for line in result.stderr.splitlines()
            if line.strip() and " INFO " not in line and " WARNING " not in line]


def assert_refused(result, code: int, *fragments: str, one_line: bool = True) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    message = "\n".join(errors(result))
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if one_line:
        assert len(errors(result)) == 1, message


def files_under(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder`` (hidden ones included, but
    not the empty marker Snakemake leaves in a finished ``directory()`` output)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp"}


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes (``.<name>.<random>.part<suffix>``)."""
    return [name for name in files_under(folder) if ".part" in Path(name).name]


@pytest.fixture(scope="module")
def short_avi(tiny_recordings) -> Path:
    folder, rows = tiny_recordings
    row = next(r for r in rows if r["sample"] == SHORT)
    return folder / row["path"]


@pytest.fixture(scope="module")
def reference_outputs(short_avi, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """One undisturbed ``rbcflow preprocess`` of the short clip: (folder, file sizes)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = rbcflow("preprocess", short_avi, "--out", out, "--fps", FPS,
                     "--um-per-px", UM_PER_PX, cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return out, {name: (out / name).stat().st_size for name in files_under(out)}


# --- bad inputs -------------------------------------------------------------------------

def _avi_with_size(data: bytes, width: int, height: int) -> bytes:
    """The AVI with another frame size in its main and stream headers."""
    patched = bytearray(data)
    main, stream = data.find(b"avih"), data.find(b"strf", data.find(b"vids"))
    patched[main + 40:main + 48] = struct.pack("<II", width, height)
    patched[stream + 12:stream + 20] = struct.pack("<ii", width, height)
    return bytes(patched)


def _frames_folder(folder: Path, heights: list[int], corrupt_last: bool = False) -> Path:
    folder.mkdir()
    for index, height in enumerate(heights):
        cv2.imwrite(str(folder / f"frame_{index:03d}.png"), np.full((height, 200), 120, np.uint8))
    if corrupt_last:
        (folder / f"frame_{len(heights):03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 64)
    return folder


def _one_frame_avi(path: Path) -> Path:
    from rbcflow.simulate.writer import VideoSink

    with VideoSink(path, "avi_raw", 800, 132, float(FPS)) as sink:
        sink.write(np.full((132, 800), 120, np.uint8))
    return path


def _tiff_with_bad_page(path: Path) -> Path:
    import tifffile

    with tifffile.TiffWriter(path) as tiff:
        for _ in range(6):
            tiff.write(np.full((64, 200), 120, np.uint8), compression="zlib")
    data = path.read_bytes()
    middle = len(data) // 2
    path.write_bytes(data[:middle] + b"\0" * 100 + data[middle + 100:])
    return path


BAD_VIDEOS = {
    # name: (how to make it from the short clip's bytes, the message's fragments)
    "empty": (lambda d, p: p.write_bytes(b""), ["cannot open as video"]),
    "random bytes": (lambda d, p: p.write_bytes(np.random.default_rng(1).integers(
        0, 256, 100_000, dtype=np.uint8).tobytes()), ["cannot open as video"]),
    "truncated": (lambda d, p: p.write_bytes(d[: len(d) * 6 // 10]),
                  ["truncated: 66 of 110 frames readable", "ingest.allow_truncated"]),
    "zero frames": (lambda d, p: p.write_bytes(d[: d.find(b"movi") + 4]),
                    ["frame 0 cannot be decoded", "corrupt header"]),
    "65000 x 65000 header": (lambda d, p: p.write_bytes(_avi_with_size(d[:2_000_000], 65000,
                                                                       65000)),
                             ["declares 65000 x 65000 pixel frames", "corrupt header"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VIDEOS))
def test_bad_video_is_refused_in_one_line_before_anything_is_written(case, short_avi,
                                                                    tmp_path):
    make, fragments = BAD_VIDEOS[case]
    video = tmp_path / "bad.avi"
    make(short_avi.read_bytes(), video)
    result = rbcflow("preprocess", video, "--out", tmp_path / "out", "--fps", FPS,
                     "--um-per-px", UM_PER_PX, cwd=tmp_path)
    assert_refused(result, 1, str(video.name), *fragments)
    assert files_under(tmp_path / "out") == {}
    assert "[rawvideo" not in result.stderr and "WARN" not in result.stderr  # FFmpeg, OpenCV


@pytest.mark.parametrize("case", ["corrupt PNG", "mixed frame sizes", "corrupt TIFF page"])
def test_bad_frames_are_refused_naming_the_frame(case, tmp_path):
    if case == "corrupt PNG":
        video, fragment = _frames_folder(tmp_path / "frames", [100] * 4, True), "frame 4"
    elif case == "mixed frame sizes":
        video, fragment = _frames_folder(tmp_path / "frames", [100, 100, 80]), "frame 2 is"
    else:
        video, fragment = _tiff_with_bad_page(tmp_path / "pages.tif"), "truncated: 2 of"
    result = rbcflow("preprocess", video, "--out", tmp_path / "out", "--fps", FPS,
                     "--um-per-px", UM_PER_PX, cwd=tmp_path)
    assert_refused(result, 1, video.name, fragment)
    assert files_under(tmp_path / "out") == {}


def test_one_frame_video_warns_naming_the_recording(tmp_path):
    video = _one_frame_avi(tmp_path / "single.avi")
    result = rbcflow("preprocess", video, "--out", tmp_path / "out", "--fps", FPS,
                     "--um-per-px", UM_PER_PX, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if " WARNING rbcflow.ingest" in line]
    assert len(warnings) == 1 and "sample single: only one frame" in warnings[0]
    meta = (tmp_path / "out" / "ingest" / "single.json").read_text()
    assert "only one frame" in meta


@pytest.mark.parametrize("option, value, fragment", [
    ("--fps", "0", "fps: 0.0 is less than or equal to the minimum of 0"),
    ("--fps", "-5", "fps: -5.0 is less than or equal"),
    ("--fps", "nan", "fps: 'nan' is not of type 'number'"),
    ("--fps", "inf", "fps: 'inf' is not of type 'number'"),
    ("--um-per-px", "nan", "um_per_px: 'nan' is not of type 'number'"),
    ("--um-per-px", "-inf", "um_per_px: '-inf' is not of type 'number'"),
    ("--um-per-px", "-0.3", "um_per_px: -0.3 is less than or equal"),
    ("--focus", "sideways", "focus: 'sideways' is not one of"),
    ("--sample", "../up", "sample: '../up' does not match"),
    ("--donor", "a b", "donor: 'a b' does not match"),
])
def test_preprocess_options_are_checked_before_any_file_is_written(option, value, fragment,
                                                                   short_avi, tmp_path):
    args = {"--fps": FPS, "--um-per-px": UM_PER_PX, option: value}
    result = rbcflow_here("preprocess", short_avi, "--out", tmp_path / "out",
                          *[part for pair in args.items() for part in pair])
    assert_refused(result, 2, fragment, "invalid recording description")
    assert files_under(tmp_path / "out") == {}


def _sheet(tmp_path: Path, short_avi: Path, edit) -> Path:
    header = ["sample", "path", "donor", "condition", "focus", "session", "fps", "um_per_px"]
    rows = [["a1", str(short_avi), "D1", "native", "in", "S1", FPS, UM_PER_PX],
            ["a2", str(short_avi), "D2", "DA", "in", "S2", FPS, UM_PER_PX]]
    header, rows = edit(header, rows)
    path = tmp_path / "samples.tsv"
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def _set(column: str, value: str, row: int = 0):
    def edit(header, rows):
        rows[row][header.index(column)] = value
        return header, rows
    return edit


SHEET_CASES = {
    "fps nan": (_set("fps", "nan"), "line 2, column fps: 'nan'"),
    "fps inf": (_set("fps", "inf", 1), "line 3, column fps: 'inf'"),
    "um_per_px -inf": (_set("um_per_px", "-inf"), "line 2, column um_per_px: '-inf'"),
    "um_per_px 0": (_set("um_per_px", "0"), "line 2, column um_per_px: 0.0"),
    "fps text": (_set("fps", "fast"), "line 2, column fps: 'fast'"),
    "duplicate sample": (_set("sample", "a1", 1), "'a1' is already used on line 2"),
    "unsafe sample": (_set("sample", "a;rm"), "line 2, column sample"),
    "unknown condition": (_set("condition", "XX"), "'XX' is not a known condition"),
    "missing file": (_set("path", "/nonexistent.avi"), "file not found: /nonexistent.avi"),
    "missing column": (lambda h, r: (h[:-1], [row[:-1] for row in r]),
                       "missing column(s) um_per_px"),
}


@pytest.mark.parametrize("case", sorted(SHEET_CASES))
def test_bad_sample_sheet_is_refused_naming_line_and_column(case, short_avi, tmp_path):
    edit, fragment = SHEET_CASES[case]
    sheet = _sheet(tmp_path, short_avi, edit)
    result = rbcflow_here("validate", "--samples", sheet)
    assert_refused(result, 2, str(sheet), fragment, one_line=False)


CONFIG_CASES = {
    "cv_folds 1": ("split:\n  cv_folds: 1\n", "split/cv_folds: 1 is not allowed: 0 = one"),
    "cv_folds 2": ("split:\n  cv_folds: 2\n", "split/cv_folds: 2 is not allowed"),
    "nan tolerance": ("ingest:\n  fps_tolerance: .nan\n",
                      "ingest/fps_tolerance: must be a finite number"),
    "inf fraction": ("split:\n  test: .inf\n", "split/test: must be a finite number"),
    "epochs as text": ("train:\n  epochs: many\n", "train/epochs: 'many' is not of type"),
    "unknown key": ("trian:\n  epochs: 3\n", "Additional properties are not allowed"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_is_refused_naming_the_key(case, tmp_path):
    text, fragment = CONFIG_CASES[case]
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = rbcflow_here("validate", "--config", config)
    assert_refused(result, 2, fragment, one_line=False)


def test_fps_cross_check_is_not_skipped(short_avi, tmp_path):
    """The file says 1800 fps; a sheet saying 1000 is refused before anything is written."""
    result = rbcflow("preprocess", short_avi, "--out", tmp_path / "out", "--fps", "1000",
                     "--um-per-px", UM_PER_PX, cwd=tmp_path)
    assert_refused(result, 1, "frame rate in the file (1800 fps) disagrees", "(1000 fps)")
    assert files_under(tmp_path / "out") == {}


# --- failing disks ----------------------------------------------------------------------

@contextlib.contextmanager
def small_tmpfs(folder: Path, size_bytes: int, read_only: bool = False):
    """A tmpfs of ``size_bytes`` mounted at ``folder`` (skips the test where none can be)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes}" + (",ro" if read_only else "")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({mount.stderr.strip() or 'not root'}); "
                    "disk-full cases need root or CAP_SYS_ADMIN")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# the chain's files in the order it writes them
WRITE_ORDER = ["ingest/{s}.png", "ingest/{s}.json", "background/{s}.npz",
               "background/{s}_qc.png", "tracks/{s}.parquet", "tracks/{s}_tracks.tsv",
               "clips/{s}.h5", "clips/{s}_qc.tsv", "qc/{s}.json"]


def _pages(size: int) -> int:
    return -(-size // 4096) * 4096


@pytest.mark.parametrize("failing", ["ingest/{s}.png", "background/{s}_qc.png",
                                     "tracks/{s}.parquet", "clips/{s}.h5"])
def test_disk_full_ends_in_one_line_naming_the_file(failing, short_avi, reference_outputs,
                                                    tmp_path):
    _, sizes = reference_outputs
    names = [name.format(s=SHORT) for name in WRITE_ORDER]
    target = failing.format(s=SHORT)
    before = names[: names.index(target)]
    # room for every file written before the target and for half of the target
    size = sum(_pages(sizes[n]) for n in before) + _pages(sizes[target] // 2)
    with small_tmpfs(tmp_path / "disk", size) as disk:
        result = rbcflow("preprocess", short_avi, "--out", disk / "out", "--fps", FPS,
                         "--um-per-px", UM_PER_PX, cwd=tmp_path)
        assert result.returncode != -signal.SIGSEGV
        assert_refused(result, 1, f"{disk / 'out' / target}: cannot write: "
                                  "no space left on device")
        assert sorted(files_under(disk / "out")) == sorted(before)  # complete files only
        assert leftovers(disk / "out") == []


def test_clip_file_on_a_full_disk_raises_write_error_and_leaves_nothing(tmp_path):
    """HDF5 once crashed the interpreter here (errno 28, then a segmentation fault)."""
    script = (
        "import sys, numpy as np, pandas as pd\n"
        "from rbcflow.clipstore import CLIP_TABLE_COLUMNS, write_clip_file\n"
        "from rbcflow.io.atomic import WriteError\n"
        "n = 400\n"
        "table = pd.DataFrame({c: [str(i) for i in range(n)] for c in CLIP_TABLE_COLUMNS})\n"
        "clips = np.random.default_rng(0).integers(0, 255, (n, 16, 32, 32), dtype=np.uint8)\n"
        "try:\n"
        "    write_clip_file(sys.argv[1], clips, table)\n"
        "except WriteError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    with small_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        target = disk / "clips" / "x.h5"
        result = subprocess.run([sys.executable, "-c", script, str(target)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 3, (result.returncode, result.stderr[-2000:])
        assert result.stdout.strip() == f"{target}: cannot write: no space left on device"
        assert files_under(disk) == {}


def test_read_only_folder_ends_in_one_line(short_avi, tmp_path):
    with small_tmpfs(tmp_path / "disk", 1 << 20, read_only=True) as disk:
        result = rbcflow("preprocess", short_avi, "--out", disk / "out", "--fps", FPS,
                         "--um-per-px", UM_PER_PX, cwd=tmp_path)
        assert_refused(result, 1, f"{disk / 'out'}", "cannot write: read-only file system")


def test_folder_without_write_permission_ends_in_one_line(short_avi, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user (root ignores modes)")
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chmod(tmp_path, 0o755)
    try:
        usable = subprocess.run([str(BIN / "python"), "-c", "import rbcflow"], user=65534,
                                group=65534, capture_output=True, cwd="/").returncode == 0
    except PermissionError:
        usable = False
    if not usable:
        pytest.skip("the environment (.venv, Python) cannot be run by an unprivileged user")
    result = subprocess.run(
        [str(BIN / "rbcflow"), "preprocess", str(short_avi), "--out", str(folder / "out"),
         "--fps", FPS, "--um-per-px", UM_PER_PX], cwd="/", capture_output=True, text=True,
        timeout=120, user=65534, group=65534, env={**os.environ, "HOME": "/tmp"})
    assert_refused(result, 1, str(folder / "out"), "cannot write: permission denied")


def test_rule_script_reports_a_full_disk_in_its_log_without_traceback(tmp_path):
    script = (
        "import sys\n"
        "from rbcflow.io.atomic import write_text_atomic\n"
        "from rbcflow.rulelog import rule_logging\n"
        "with rule_logging(sys.argv[1]):\n"
        "    write_text_atomic(sys.argv[2], 'x' * 300_000)\n"
    )
    log = tmp_path / "logs" / "job.log"
    with small_tmpfs(tmp_path / "disk", 128 * 1024) as disk:
        result = subprocess.run([sys.executable, "-c", script, str(log), str(disk / "t.txt")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        text = log.read_text()
        assert "Traceback" not in text
        assert f"job failed: {disk / 't.txt'}: cannot write: no space left on device" in text
        assert files_under(disk) == {}


# --- two writers ------------------------------------------------------------------------

def test_two_commands_writing_one_folder_leave_complete_identical_files(short_avi,
                                                                       reference_outputs,
                                                                       tmp_path):
    reference, _ = reference_outputs
    out = tmp_path / "out"
    command = [str(BIN / "rbcflow"), "preprocess", str(short_avi), "--out", str(out),
               "--fps", FPS, "--um-per-px", UM_PER_PX]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    first_err = first.communicate(timeout=120)[1]
    assert first.returncode == 0 and second.returncode == 0, (first_err, second.stderr)
    assert files_under(out) == files_under(reference)


# --- interrupted workflows --------------------------------------------------------------

def snakemake(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), "--cores", "1", *args], cwd=project,
                          env=project_env(project), capture_output=True, text=True,
                          timeout=timeout)


def _write_sheet(folder: Path, rows: list[dict]) -> Path:
    """``folder/samples.tsv`` holding the simulator's sheet rows (paths relative to it)."""
    columns = list(rows[0])
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join("\t".join(str(r[c]) for c in columns)
                               for r in [dict(zip(columns, columns, strict=True)), *rows]) + "\n")
    return sheet


@pytest.fixture(scope="module")
def workflow_project(tiny_recordings, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A project copy whose sheet holds the three tiny recordings (one job each), and the
    files of its uninterrupted ``preprocess_all``."""
    folder, rows = tiny_recordings
    sheet = _write_sheet(folder, rows)
    root = tmp_path_factory.mktemp("faults") / "project"
    root.mkdir()
    # three recordings of one donor: no task could be split, which the study check
    # (rbcflow.study) refuses at start-up; preprocessing alone does not need a split
    project = make_project(root, {"samples": str(sheet), "preprocess": {"batch_mb": 1},
                                  "study": {"enabled": False}})
    result = snakemake(project, "preprocess_all")
    assert result.returncode == 0, result.stderr[-4000:]
    reference = files_under(project / "results" / "preprocess")
    assert len(reference) == 9 * len(rows)
    shutil.rmtree(project / "results")
    return project, reference


def _interrupt(project: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``preprocess_all``; once its last job has started, send ``sig`` to the whole
    run."""
    shutil.rmtree(project / "results", ignore_errors=True)
    shutil.rmtree(project / "logs", ignore_errors=True)
    run = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "preprocess_all"],
                           cwd=project, env=project_env(project), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    logs = project / "logs" / "preprocess_batch"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if len(list(logs.glob("*.log"))) == 3:
            break
        time.sleep(0.02)
    # at once: the last job has started, and a job on a tiny recording is over in well
    # under a second (waiting would race its end)
    assert run.poll() is None, "the run ended before it could be interrupted"
    os.killpg(run.pid, sig)
    stdout, stderr = run.communicate(timeout=300)
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


def test_sigint_during_preprocessing_then_rerun_gives_the_same_files(workflow_project):
    project, reference = workflow_project
    interrupted = _interrupt(project, signal.SIGINT)
    assert interrupted.returncode != 0
    assert files_under(project / "results" / "preprocess") != reference
    # the lock is released; the interrupted job may still be marked incomplete
    rerun = snakemake(project, "--rerun-incomplete", "preprocess_all")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert files_under(project / "results" / "preprocess") == reference


def test_sigkill_then_unlock_and_rerun_incomplete_gives_the_same_files(workflow_project):
    project, reference = workflow_project
    killed = _interrupt(project, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    # a plain rerun refuses, naming what the README says to do: the lock the killed run
    # left (--unlock) or, where Snakemake found it stale, the killed job's outputs
    refused = snakemake(project, "preprocess_all")
    assert refused.returncode != 0, refused.stderr[-3000:]
    assert "--unlock" in refused.stderr or "--rerun-incomplete" in refused.stderr
    unlocked = snakemake(project, "--unlock", "preprocess_all")
    assert unlocked.returncode == 0, unlocked.stderr[-3000:]
    recovered = snakemake(project, "--rerun-incomplete", "preprocess_all")
    assert recovered.returncode == 0, recovered.stderr[-4000:]
    assert files_under(project / "results" / "preprocess") == reference
    assert leftovers(project / "results") == []


def test_second_workflow_on_one_project_is_refused_while_the_first_runs(workflow_project):
    project, reference = workflow_project
    shutil.rmtree(project / "results", ignore_errors=True)
    shutil.rmtree(project / "logs", ignore_errors=True)
    first = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "preprocess_all"],
                             cwd=project, env=project_env(project), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    logs = project / "logs" / "preprocess_batch"
    deadline = time.monotonic() + 300
    locks = project / ".snakemake" / "locks"
    # the first run holds its lock and runs its first job
    while time.monotonic() < deadline and first.poll() is None and not (
            any(logs.glob("*.log")) and any(locks.glob("*.lock"))):
        time.sleep(0.05)
    second = snakemake(project, "preprocess_all")
    first_err = first.communicate(timeout=300)[1]
    # refused by the lock, or (Snakemake checks this first) by the first run's job in flight
    assert second.returncode != 0, second.stderr[-3000:]
    assert ("cannot be locked" in second.stderr
            or "IncompleteFilesException" in second.stderr), second.stderr[-3000:]
    assert first.returncode == 0, first_err[-3000:]
    assert files_under(project / "results" / "preprocess") == reference


def test_nested_config_values_from_the_command_line_are_typed(workflow_project):
    project, _ = workflow_project
    accepted = snakemake(project, "-n", "preprocess_all", "--config", 'train={"epochs": 3}')
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    refused = snakemake(project, "-n", "preprocess_all", "--config",
                        'train={"epochs": "many"}')
    assert refused.returncode != 0
    assert "train/epochs: 'many' is not of type 'integer'" in refused.stderr + refused.stdout


# --- interrupted training ---------------------------------------------------------------

# Native and DA continuous recordings of three donors: a one-task project that the
# donor-grouped split can cut 1 / 1 / 1 (about 55 clips); 3 epochs of 2-3 s each.
TRAINING_RECORDINGS = tuple(f"D0{donor}_{condition}_in_c1" for donor in (1, 2, 3)
                            for condition in ("native", "DA"))
TRAINING = {
    "tasks": [{"name": "DA", "negative": ["native"], "positive": ["DA"]}],
    "train": {"epochs": 3, "patience": 2, "min_epochs": 0},
    "evaluate": {"ablations": False},
}
MODEL_FOLDER = Path("results/models/DA")
TRAIN_OUTPUTS = ("model.keras", "history.csv", "train_summary.json")
# the training job's outputs (train_all would add the evaluation, which no case interrupts)
TRAINED = str(MODEL_FOLDER / "model.keras")


@pytest.fixture(scope="module")
def training_project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A project copy preprocessed and split for one task, and the files of its model
    folder after an uninterrupted training; the folder is removed again, so each case
    starts at the training job."""
    from rbcflow.simulate.scenario import plan_dataset, write_video

    folder = tmp_path_factory.mktemp("training_recordings")
    specs = {spec.sample: spec for spec in plan_dataset("tiny", seed=TINY_SEED)}
    rows = [write_video(specs[name], TINY_SEED, folder, "avi_raw")["row"]
            for name in TRAINING_RECORDINGS]
    root = tmp_path_factory.mktemp("training") / "project"
    root.mkdir()
    project = make_project(root, {"samples": str(_write_sheet(folder, rows)), **TRAINING})
    result = snakemake(project, TRAINED)
    assert result.returncode == 0, result.stderr[-4000:]
    reference = files_under(project / MODEL_FOLDER)
    assert sorted(reference) == sorted(TRAIN_OUTPUTS)
    shutil.rmtree(project / MODEL_FOLDER)
    return project, reference


def _training_job(run: subprocess.Popen, log: Path, timeout: float = 300) -> list:
    """The processes of the run's ``train_model`` job, once its log shows a finished
    epoch (so the interrupt comes inside ``model.fit``, with epochs still to go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        if log.exists() and " epoch 1/" in log.read_text():
            break
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before its training could be interrupted"
    assert " epoch 1/" in log.read_text(), f"no epoch in {log} after {timeout} s"
    processes = psutil.Process(run.pid).children(recursive=True)
    job = [p for p in processes if any("train_model" in part for part in p.cmdline())]
    assert job, [p.cmdline() for p in processes]
    return processes


def _interrupt_training(project: Path, sig: int, stderr: Path) -> subprocess.CompletedProcess:
    """Start the training; once its training job has run an epoch, send ``sig`` to the
    whole run (for SIGKILL also to each of its processes: a job outside the process
    group would train on). Nothing of the run is left running afterwards, pass or fail."""
    shutil.rmtree(project / MODEL_FOLDER, ignore_errors=True)
    shutil.rmtree(project / "logs" / "train_model", ignore_errors=True)
    processes = []
    with open(stderr, "w") as errors_file:
        run = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", TRAINED],
                               cwd=project, env=project_env(project),
                               stdout=subprocess.DEVNULL, stderr=errors_file,
                               start_new_session=True)
        try:
            processes = _training_job(run, project / "logs" / "train_model" / "DA.log")
            os.killpg(run.pid, sig)
            if sig == signal.SIGKILL:
                for process in processes:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        process.kill()
            run.wait(timeout=120)
            _, alive = psutil.wait_procs(processes, timeout=60)
            assert alive == [], [p.cmdline() for p in alive]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            run.wait(timeout=60)
    return subprocess.CompletedProcess(run.args, run.returncode, "", stderr.read_text())


def _assert_nothing_trained(project: Path) -> None:
    """No model, history or summary (whole or partial) where the interrupted job left."""
    left = files_under(project / MODEL_FOLDER)
    assert not set(left) & set(TRAIN_OUTPUTS), left
    assert leftovers(project / "results") == []


def test_sigint_during_training_then_rerun_gives_the_same_model(training_project, tmp_path):
    project, reference = training_project
    interrupted = _interrupt_training(project, signal.SIGINT, tmp_path / "stderr.txt")
    assert interrupted.returncode != 0, interrupted.stderr[-3000:]
    _assert_nothing_trained(project)
    assert not any((project / ".snakemake" / "locks").glob("*.lock"))  # released
    rerun = snakemake(project, "--rerun-incomplete", TRAINED)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "rule train_model:" in rerun.stdout + rerun.stderr
    assert "rule split_task:" not in rerun.stdout + rerun.stderr  # only what was interrupted
    assert files_under(project / MODEL_FOLDER) == reference


def test_sigkill_during_training_then_unlock_and_rerun_incomplete_gives_the_same_model(
        training_project, tmp_path):
    project, reference = training_project
    killed = _interrupt_training(project, signal.SIGKILL, tmp_path / "stderr.txt")
    assert killed.returncode == -signal.SIGKILL
    _assert_nothing_trained(project)
    refused = snakemake(project, TRAINED)
    assert refused.returncode != 0, refused.stderr[-3000:]
    assert "--unlock" in refused.stderr or "--rerun-incomplete" in refused.stderr
    unlocked = snakemake(project, "--unlock", TRAINED)
    assert unlocked.returncode == 0, unlocked.stderr[-3000:]
    recovered = snakemake(project, "--rerun-incomplete", TRAINED)
    assert recovered.returncode == 0, recovered.stderr[-4000:]
    assert "rule split_task:" not in recovered.stdout + recovered.stderr
    assert files_under(project / MODEL_FOLDER) == reference
    assert leftovers(project / "results") == []
