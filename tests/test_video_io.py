"""Frame readers: every container gives back the frames written, errors name file and frame."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import tifffile

from rbcflow.io.video import (
    CineReader,
    FrameFolderReader,
    OpenCVReader,
    TiffReader,
    VideoError,
    open_video,
    sample_frames,
)

H, W, N = 48, 96, 12


def _frames(n=N, seed=0):
    """Smooth random frames (codecs behave as on real images) with a moving dark spot."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(60, 200, (H, W)).astype(np.float32), (0, 0), 3)
    out = []
    for i in range(n):
        frame = base + rng.normal(0, 2, (H, W))
        cv2.circle(frame, (8 + 6 * i, H // 2), 5, 40, -1)
        out.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return out


def _write_video(path, frames, fourcc="raw", fps=250.0, color=False):
    code = 0 if fourcc == "raw" else cv2.VideoWriter_fourcc(*fourcc)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, code, fps, (W, H), isColor=color)
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if color else frame)
    writer.release()
    return path


def _read_all(path):
    with open_video(path) as reader:
        return reader, [f for _, f in reader.frames()]


@pytest.mark.parametrize(("name", "fourcc"), [("raw.avi", "raw"), ("ffv1.avi", "FFV1"),
                                              ("ffv1.mkv", "FFV1")])
def test_lossless_video_is_exact(tmp_path, name, fourcc):
    frames = _frames()
    reader, got = _read_all(_write_video(tmp_path / name, frames, fourcc))
    assert isinstance(reader, OpenCVReader) and reader.reader == "opencv"
    assert (reader.width, reader.height, reader.n_frames_header) == (W, H, N)
    assert reader.fps == pytest.approx(250.0)
    assert len(got) == N and all(g.dtype == np.uint8 and g.ndim == 2 for g in got)
    assert all(np.array_equal(g, f) for g, f in zip(got, frames, strict=True))
    assert reader.problems == []


def test_mjpg_and_colour_video_become_grey(tmp_path):
    frames = _frames()
    _, mjpg = _read_all(_write_video(tmp_path / "m.avi", frames, "MJPG"))
    _, colour = _read_all(_write_video(tmp_path / "c.avi", frames, "FFV1", color=True))
    for got in (mjpg, colour):
        assert len(got) == N and got[0].shape == (H, W)
        errors = [np.abs(g.astype(int) - f).mean() for g, f in zip(got, frames, strict=True)]
        assert max(errors) < 3.0  # lossy JPEG / colour round trip, but the same picture


def test_frames_window_and_sample_frames(tmp_path):
    frames = _frames()
    path = _write_video(tmp_path / "raw.avi", frames)
    with open_video(path) as reader:
        window = list(reader.frames(3, 7))
    assert [i for i, _ in window] == [3, 4, 5, 6]
    assert all(np.array_equal(f, frames[i]) for i, f in window)
    picked = sample_frames(path, [9, 2, 5])
    assert sorted(picked) == [2, 5, 9]
    assert all(np.array_equal(picked[i], frames[i]) for i in picked)
    with pytest.raises(VideoError, match=r"raw\.avi.*\[20\]"):
        sample_frames(path, [1, 20])


@pytest.mark.parametrize("kind", ["raw.avi", "ffv1.avi", "s.tif", "frames"])
def test_only_yields_the_chosen_frames(tmp_path, kind):
    frames = _frames()
    if kind.endswith(".avi"):
        path = _write_video(tmp_path / kind, frames, "raw" if kind == "raw.avi" else "FFV1")
    elif kind == "s.tif":
        path = tmp_path / kind
        tifffile.imwrite(path, np.stack(frames))
    else:
        path = tmp_path / kind
        path.mkdir()
        for i, frame in enumerate(frames):
            cv2.imwrite(str(path / f"{i:03d}.png"), frame)
    with open_video(path) as reader:
        got = list(reader.frames(2, 11, only={1, 3, 4, 8, 10, 11}))
        # frames passed over leave the stream in step: what follows is still exact
        rest = list(reader.frames(0, None, only=range(9, N)))
        assert reader.problems == []
    assert [i for i, _ in got] == [3, 4, 8, 10]
    assert all(np.array_equal(f, frames[i]) for i, f in got)
    assert [i for i, _ in rest] == list(range(9, N))
    assert all(np.array_equal(f, frames[i]) for i, f in rest)


def _write_raw_avi(path, frames, sizes=None):
    """Uncompressed Y800 AVI with the simulator's writer; ``sizes`` cuts chunks short."""
    from rbcflow.simulate.writer import _AviFile

    height, width = frames[0].shape
    with open(path, "wb") as handle:
        avi = _AviFile(handle, width, height, 250.0, b"Y800", 8)
        for i, frame in enumerate(frames):
            payload = frame.tobytes()
            avi.write_chunk(payload[: (sizes or {}).get(i, len(payload))], b"00db")
        avi.close()
    return path


def test_raw_avi_chunks_read_directly_equal_ffmpeg(tmp_path):
    frames = [f[:, :95].copy() for f in _frames()]  # odd width: odd chunks, padding bytes
    path = _write_raw_avi(tmp_path / "odd.avi", frames)
    with open_video(path) as reader:
        assert isinstance(reader, OpenCVReader) and reader.reads_raw
        got = list(reader.frames())
        decoded = list(reader._decoded(0, None, None))
        assert reader.problems == []
    assert [i for i, _ in got] == list(range(N)) == [i for i, _ in decoded]
    assert all(np.array_equal(f, frames[i]) for i, f in got)
    assert all(np.array_equal(f, g) for (_, f), (_, g) in zip(got, decoded, strict=True))


def test_raw_avi_odd_chunk_hands_over_to_ffmpeg(tmp_path):
    frames = _frames()
    path = _write_raw_avi(tmp_path / "drop.avi", frames, sizes={5: 0})  # a dropped frame
    with open_video(path) as reader:
        assert reader.reads_raw
        got = list(reader.frames())
        decoded = list(reader._decoded(0, None, None))
    # whatever FFmpeg makes of the empty chunk, the reader gives the same
    assert [i for i, _ in got] == [i for i, _ in decoded]
    assert all(np.array_equal(f, g) for (_, f), (_, g) in zip(got, decoded, strict=True))
    assert all(np.array_equal(f, frames[i]) for i, f in got[:5])


def test_raw_avi_header_with_a_lying_size_is_parsed_within_the_file(tmp_path):
    import tracemalloc

    from rbcflow.io.video import _RawAvi

    path = _write_raw_avi(tmp_path / "lie.avi", _frames())
    data = bytearray(path.read_bytes())
    hdrl = data.find(b"hdrl") - 8  # the LIST header of the stream headers
    data[hdrl + 4 : hdrl + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    tracemalloc.start()
    parsed = _RawAvi.parse(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a 4 GB size field must not become a 4 GB read; the layout itself is still found
    assert peak < 1_000_000
    assert parsed is None or parsed.shape == (H, W)


def test_multipage_tiff_8_and_16_bit(tmp_path):
    frames = _frames()
    tifffile.imwrite(tmp_path / "s.tif", np.stack(frames))
    reader, got = _read_all(tmp_path / "s.tif")
    assert isinstance(reader, TiffReader) and reader.n_frames_header == N
    assert all(np.array_equal(g, f) for g, f in zip(got, frames, strict=True))
    deep = np.stack(frames).astype(np.uint16) << 4  # 12-bit data in 16-bit samples
    tifffile.imwrite(tmp_path / "deep.tiff", deep)
    reader, got = _read_all(tmp_path / "deep.tiff")
    assert reader.dtype == "uint16"
    assert all(np.array_equal(g, f) for g, f in zip(got, frames, strict=True))


def test_png_folder_in_natural_order(tmp_path):
    frames = _frames()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img_{i}.png"), frame)  # img_10 sorts after img_9
    (folder / "notes.txt").write_text("not a frame")
    reader, got = _read_all(folder)
    assert isinstance(reader, FrameFolderReader) and reader.fps is None
    assert all(np.array_equal(g, f) for g, f in zip(got, frames, strict=True))


def test_missing_unsupported_and_corrupt_files(tmp_path):
    with pytest.raises(VideoError, match="nothere.avi: no such file"):
        open_video(tmp_path / "nothere.avi")
    (tmp_path / "x.xyz").write_bytes(b"\0" * 100)
    with pytest.raises(VideoError, match=r"x\.xyz: unsupported"):
        open_video(tmp_path / "x.xyz")
    (tmp_path / "bad.avi").write_bytes(b"not a video" * 50)
    with pytest.raises(VideoError, match=r"bad\.avi: cannot open"):
        open_video(tmp_path / "bad.avi")
    (tmp_path / "bad.tif").write_bytes(b"II*\0garbage" * 10)
    with pytest.raises(VideoError, match=r"bad\.tif: cannot read as TIFF"):
        open_video(tmp_path / "bad.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="empty: zero frames"):
        open_video(tmp_path / "empty")


def test_cine_dispatch_and_error(tmp_path, monkeypatch):
    path = tmp_path / "rec.cine"
    path.write_bytes(b"not a cine file" * 20)
    with pytest.raises(VideoError, match=r"rec\.cine: cannot read as Phantom cine"):
        open_video(path)

    class FakeCine:  # stands in for pims.Cine: the reader's own logic is what is tested
        frame_rate = 2000.0

        def __init__(self, name):
            self.frames = [f.astype(np.uint16) << 4 for f in _frames(3)]

        def __len__(self):
            return len(self.frames)

        def get_frame(self, i):
            return self.frames[i]

        def close(self):
            pass

    import pims

    monkeypatch.setattr(pims, "Cine", FakeCine)
    reader, got = _read_all(path)
    assert isinstance(reader, CineReader) and reader.fps == 2000.0
    assert all(np.array_equal(g, f) for g, f in zip(got, _frames(3), strict=True))


def test_size_change_names_the_frame(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = _frames(4)
    frames[2] = cv2.resize(frames[2], (W + 8, H))
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    with open_video(folder) as reader, pytest.raises(VideoError, match="frame 2 is 104x48"):
        list(reader.frames())
    pages = _frames(4)
    tifffile.imwrite(tmp_path / "s.tif", pages[0])
    tifffile.imwrite(tmp_path / "s.tif", cv2.resize(pages[1], (W, H + 2)), append=True)
    with open_video(tmp_path / "s.tif") as reader, pytest.raises(VideoError, match="frame 1"):
        list(reader.frames())


def test_truncated_avi_stops_and_reports(tmp_path):
    path = _write_video(tmp_path / "raw.avi", _frames(20))
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with open_video(cut) as reader:
        got = list(reader.frames())
        assert reader.n_frames_header == 20
        assert 0 < len(got) < 20
        assert reader.problems and f"frame {len(got)}" in reader.problems[0]
        assert str(cut) in reader.problems[0]


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                    reason="counts threads through /proc")
def test_ffmpeg_decodes_with_opencvs_thread_count(tmp_path):
    """A job limited to one thread decodes with one: FFmpeg starts no thread of its own;
    with more threads allowed the same frames come back."""
    frames = _frames()
    path = _write_video(tmp_path / "m.avi", frames, "MJPG")
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        with open_video(path) as reader:
            baseline = _threads_now()
            stream = reader.frames()
            one = [next(stream)[1]]
            during = _threads_now()
            one += [f for _, f in stream]
        assert during == baseline, "FFmpeg started decoding threads beyond the job's one"
        cv2.setNumThreads(4)
        _, four = _read_all(path)
    finally:
        cv2.setNumThreads(before)
    assert len(one) == N and all(np.array_equal(a, b) for a, b in zip(one, four, strict=True))
