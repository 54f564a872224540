"""Streaming frame readers: every recording becomes a sequence of grey uint8 frames.

``open_video(path)`` picks the reader from the path: ``.avi``/``.mp4``/``.mov``/``.mkv``
(OpenCV/FFmpeg), multi-page ``.tif``/``.tiff`` (tifffile, page by page), a folder of PNG or
TIFF frames (natural sort order of the file names), or Phantom ``.cine`` (pims). Frames are
decoded one at a time, so memory does not grow with the length of the recording.

Grey raw or FFV1 video (pixel format ``Y800``) is read without OpenCV's BGR conversion,
which is about six times faster; anything else is decoded to colour by the codec and
converted to grey once (ITU-R BT.601 luma). Uncompressed 8-bit grey AVI (``Y800``,
``Y8``, ``GREY``) is read straight from its frame chunks, one read into each frame's
array, which halves the decoding cost again; its first frame is checked against
OpenCV's at opening, and any chunk that does not hold exactly one frame hands the rest of
the stream back to OpenCV. Deeper-than-8-bit frames are shifted right by
a per-file amount fixed from the first frame, so their brightest value fits in 8 bits.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Container, Generator, Iterable, Iterator
from pathlib import Path

# FFmpeg's and OpenCV's own complaints about a damaged file (dozens of lines for one bad
# header) say less than the one VideoError raised here; set OPENCV_FFMPEG_LOGLEVEL=32 and
# OPENCV_LOG_LEVEL=WARNING to see them. OpenCV reads both once, before its first capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

if "OPENCV_LOG_LEVEL" not in os.environ:  # cv2 may have been imported before this module
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")
TIFF_SUFFIXES = (".tif", ".tiff")
FRAME_SUFFIXES = (".png", ".tif", ".tiff")
CINE_SUFFIXES = (".cine",)


class VideoError(Exception):
    """A recording cannot be read as intended; the message names the file and frame."""


def _fourcc_text(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> (8 * k)) & 0xFF) for k in range(4))


def _shift_for(frame: np.ndarray) -> int:
    """Right shift that brings a deeper-than-8-bit frame's brightest value into 0..255."""
    if frame.dtype == np.uint8:
        return 0
    top = int(frame.max()) if frame.size else 0
    return max(0, top.bit_length() - 8)


def _to_grey(frame: np.ndarray, shift: int, channel_order: str) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3:
        if frame.dtype != np.uint8:
            frame = (frame >> shift).clip(0, 255).astype(np.uint8) if frame.dtype.kind in "ui" \
                else np.clip(frame, 0, 255).astype(np.uint8)
            shift = 0
        code = {
            ("BGR", 3): cv2.COLOR_BGR2GRAY, ("BGR", 4): cv2.COLOR_BGRA2GRAY,
            ("RGB", 3): cv2.COLOR_RGB2GRAY, ("RGB", 4): cv2.COLOR_RGBA2GRAY,
        }.get((channel_order, frame.shape[2]))
        if code is None:
            raise ValueError(f"unsupported frame with {frame.shape[2]} channels")
        frame = cv2.cvtColor(np.ascontiguousarray(frame), code)
    if frame.ndim != 2:
        raise ValueError(f"unsupported frame shape {frame.shape}")
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype.kind in "ui":
        return (frame >> shift).clip(0, 255).astype(np.uint8)
    if frame.dtype == np.bool_:
        return frame.astype(np.uint8) * 255
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


#: BITMAPINFOHEADER compressions of top-down 8-bit grey frames (what FFmpeg reads as gray).
_GREY_FOURCCS = (b"Y800", b"Y8  ", b"GREY")


def _avi_declared_sizes(head: bytes) -> list[tuple[int, int]]:
    """Frame sizes (width, height) an AVI's main and stream headers declare."""
    sizes = []
    main = head.find(b"avih")
    if main >= 0 and main + 48 <= len(head):
        sizes.append(struct.unpack("<II", head[main + 40:main + 48]))
    stream = head.find(b"strf", head.find(b"vids"))
    if stream >= 0 and head.find(b"vids") >= 0 and stream + 20 <= len(head):
        width, height = struct.unpack("<ii", head[stream + 12:stream + 20])
        sizes.append((abs(width), abs(height)))
    return sizes


def _undecodable_reason(path: Path) -> str:
    """Why a video's first frame may not decode: a header larger than the file, or none."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
        file_size = path.stat().st_size
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        for width, height in _avi_declared_sizes(head):
            if width * height > file_size:
                return (f"the header declares {width} x {height} pixel frames, more than "
                        f"the file's {file_size} bytes hold: a corrupt header")
    return "zero frames, or a codec FFmpeg cannot decode"


class _NotOneFrame(Exception):
    """A movi chunk the raw AVI path does not read as one frame (index of that frame)."""


class _RawAvi:
    """Frame chunks of an uncompressed 8-bit grey AVI, read without a decoder.

    Only the layout is parsed here: the ``movi`` lists (of the RIFF ``AVI `` chunk and of
    the OpenDML ``AVIX`` extensions, in file order) and the video stream's chunk prefix.
    :meth:`parse` returns None for anything else, and the caller compares the first
    frame with OpenCV's before using it.
    """

    def __init__(self, path: Path, shape: tuple[int, int], prefix: bytes,
                 movi: list[tuple[int, int]]) -> None:
        self.path = path
        self.shape = shape
        self.frame_bytes = shape[0] * shape[1]
        self.prefix = prefix
        self.movi = movi

    @classmethod
    def parse(cls, path: Path) -> _RawAvi | None:
        try:
            with open(path, "rb") as f:
                return cls._parse(path, f, path.stat().st_size)
        except (OSError, struct.error, ValueError):
            return None

    @classmethod
    def _parse(cls, path: Path, f, file_size: int) -> _RawAvi | None:
        movi: list[tuple[int, int]] = []
        shape = prefix = None
        pos = 0
        while pos + 12 <= file_size:
            f.seek(pos)
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] not in (b"AVI ", b"AVIX"):
                break
            end = min(pos + 8 + struct.unpack("<I", head[4:8])[0], file_size)
            inner = pos + 12
            while inner + 12 <= end:
                f.seek(inner)
                chunk = f.read(12)
                size = struct.unpack("<I", chunk[4:8])[0]
                if chunk[:4] == b"LIST" and chunk[8:12] == b"movi":
                    movi.append((inner + 12, min(inner + 8 + size, end)))
                elif chunk[:4] == b"LIST" and chunk[8:12] == b"hdrl" and shape is None:
                    f.seek(inner + 12)
                    # a size field is only trusted as far as the enclosing chunk goes
                    found = cls._video_stream(f.read(max(0, min(size, end - inner - 8) - 4)))
                    if found is None:
                        return None
                    shape, prefix = found
                inner += 8 + size + (size & 1)
            pos = end + ((end - pos) & 1)
        if shape is None or not movi:
            return None
        return cls(path, shape, prefix, movi)

    @staticmethod
    def _video_stream(hdrl: bytes) -> tuple[tuple[int, int], bytes] | None:
        """(height, width) and chunk prefix of the first video stream, if 8-bit grey."""
        pos, stream = 0, 0
        while pos + 12 <= len(hdrl):
            fcc, size = hdrl[pos:pos + 4], struct.unpack("<I", hdrl[pos + 4:pos + 8])[0]
            if fcc == b"LIST" and hdrl[pos + 8:pos + 12] == b"strl":
                strl = hdrl[pos + 12:pos + 8 + size]
                strh = strl.find(b"strh")
                strf = strl.find(b"strf")
                if strh >= 0 and strl[strh + 8:strh + 12] == b"vids":
                    if strf < 0:
                        return None
                    _, width, height, _, bits, compression = struct.unpack(
                        "<IiiHH4s", strl[strf + 8:strf + 28])
                    if bits != 8 or compression not in _GREY_FOURCCS or width <= 0 \
                            or height <= 0:
                        return None
                    return (height, width), f"{stream:02d}".encode()
                stream += 1
            pos += 8 + size + (size & 1)
        return None

    def frames(self, start: int, stop: int | None, only: Container[int] | None
               ) -> Generator[tuple[int, np.ndarray], None, int]:
        """Yield ``(index, frame)`` like :meth:`VideoReader.frames`.

        Returns the index it stopped at: ``stop``, or the number of whole frames the file
        holds. Raises :class:`_NotOneFrame` at a video chunk of another size than a frame.
        """
        index = 0
        with open(self.path, "rb", buffering=0) as f:
            here = 0
            ahead: tuple[int, bytes] | None = None  # the chunk header read with a frame
            for lo, hi in self.movi:
                pos = lo
                while pos + 8 <= hi:
                    if ahead is not None and ahead[0] == pos:
                        head = ahead[1]
                    else:
                        if here != pos:
                            f.seek(pos)
                        head = f.read(8)
                        here = pos + len(head)
                    ahead = None
                    if len(head) < 8:
                        return index
                    fcc, size = head[:4], struct.unpack("<I", head[4:])[0]
                    if fcc == b"LIST":  # a 'rec ' group: walk into it
                        pos += 12
                        continue
                    step = 8 + size + (size & 1)
                    if fcc[:2] == self.prefix and fcc[2:] in (b"db", b"dc"):
                        if size != self.frame_bytes:
                            raise _NotOneFrame(index)
                        if index >= start and (only is None or index in only):
                            # the frame and the next chunk's header in one read
                            buffer = np.empty(step, np.uint8)
                            got = f.readinto(buffer) or 0
                            here += got
                            if got < size:
                                return index  # truncated file: the stream ends here
                            if got == step:
                                ahead = (pos + step, buffer[size + (size & 1):].tobytes())
                            yield index, buffer[:size].reshape(self.shape)
                        index += 1
                        if stop is not None and index >= stop:
                            return index
                    pos += step
        return index


class VideoReader:
    """Base of the readers: a context manager that streams grey uint8 frames.

    Attributes
    ----------
    path : Path
    reader : str
        Name of the reader (``opencv``, ``tifffile``, ``frames``, ``cine``).
    n_frames_header : int or None
        Frame count the container declares (None when it declares none).
    fps : float or None
        Frame rate the container declares.
    width, height : int
        Frame size, from the first frame.
    dtype : str
        Sample type stored in the file (frames are always delivered as uint8).
    problems : list of str
        Decode problems met so far (e.g. the stream ending before the declared count).
    """

    reader = "base"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such file or folder")
        self.n_frames_header: int | None = None
        self.fps: float | None = None
        self.width = 0
        self.height = 0
        self.dtype = "uint8"
        self.problems: list[str] = []
        self._shift = 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (readers that hold one override this)."""

    def _set_size(self, frame: np.ndarray) -> None:
        self.height, self.width = int(frame.shape[0]), int(frame.shape[1])

    def _checked(self, frame: np.ndarray, index: int) -> np.ndarray:
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            raise VideoError(
                f"{self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]} px, "
                f"expected {self.width}x{self.height} (frame size changed mid-file)"
            )
        return frame

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def frames(self, start: int = 0, stop: int | None = None,
               only: Container[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for ``start <= index < stop`` (to the end when None).

        Frames are HxW uint8 grey arrays, decoded one at a time in file order. The stream
        ends early, without an exception, when the file holds fewer readable frames;
        the reason is appended to :attr:`problems`. With ``only``, just the indices in it
        are yielded; the others are passed over without building their arrays (for a
        video stream: demuxed, not converted), which is cheaper than skipping them after.
        """
        raise NotImplementedError


def _ffmpeg_capture(path: Path) -> cv2.VideoCapture:
    """OpenCV's FFmpeg capture of ``path``, decoding with OpenCV's thread count.

    FFmpeg otherwise starts a decoding thread per core whatever ``cv2.setNumThreads``
    says, so a workflow job given one core (``rbcflow.rulelog.limit_threads``) decoded
    with two on a 2-core machine: frame hand-overs between threads cost CPU time (MJPG
    12 to 29 % more per frame, uncompressed video several times more) and
    oversubscribe cores that other jobs hold. The decoded frames are the same for any
    thread count.
    """
    threads = max(1, cv2.getNumThreads())
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])


class OpenCVReader(VideoReader):
    """AVI/MP4/MOV/MKV through OpenCV's FFmpeg backend."""

    reader = "opencv"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: not a file")
        capture = _ffmpeg_capture(self.path)
        try:
            if not capture.isOpened():
                raise VideoError(f"{self.path}: cannot open as video (unreadable or corrupt)")
            capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)
            ok, first = capture.read()
            if not ok or first is None:
                raise VideoError(f"{self.path}: frame 0 cannot be decoded "
                                 f"({_undecodable_reason(self.path)})")
            # Only a grey pixel format is returned correctly without conversion; others
            # (BGR, YUV) come back as raw planes.
            self._raw_grey = _fourcc_text(capture.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT)) == "Y800"
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(capture.get(cv2.CAP_PROP_FPS))
        finally:
            capture.release()
        self.n_frames_header = count if count > 0 else None
        self.fps = fps if fps > 0 else None
        if not self._raw_grey:
            first = self._first_colour_frame()
        elif first.ndim == 3:
            first = first[:, :, 0]
        self._set_size(first)
        self._raw_avi = _RawAvi.parse(self.path) if self._raw_grey else None
        if self._raw_avi is not None:
            # the same pixels as OpenCV's or not at all (row order, stride, stream choice)
            head = next(self._raw_avi.frames(0, 1, None), (0, None))[1]
            if head is None or not np.array_equal(head, first):
                self._raw_avi = None

    @property
    def reads_raw(self) -> bool:
        """True when frames are read straight from an uncompressed AVI's chunks."""
        return self._raw_avi is not None

    def _capture(self) -> cv2.VideoCapture:
        capture = _ffmpeg_capture(self.path)
        if not capture.isOpened():
            raise VideoError(f"{self.path}: cannot open as video (unreadable or corrupt)")
        capture.set(cv2.CAP_PROP_CONVERT_RGB, 0 if self._raw_grey else 1)
        return capture

    def _first_colour_frame(self) -> np.ndarray:
        capture = self._capture()
        try:
            ok, frame = capture.read()
        finally:
            capture.release()
        if not ok:
            raise VideoError(f"{self.path}: frame 0 cannot be decoded")
        return _to_grey(frame, 0, "BGR")

    def frames(self, start: int = 0, stop: int | None = None,
               only: Container[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        if self._raw_avi is None:
            yield from self._decoded(start, stop, only)
            return
        try:
            end = yield from self._raw_avi.frames(start, stop, only)
        except _NotOneFrame as exc:
            # a chunk of another size (a dropped frame, a foreign layout): FFmpeg decides
            yield from self._decoded(max(start, exc.args[0]), stop, only)
            return
        if stop is None or end < stop:
            self._end(end)

    def _decoded(self, start: int, stop: int | None, only: Container[int] | None
                 ) -> Iterator[tuple[int, np.ndarray]]:
        capture = self._capture()
        try:
            index = 0
            # Skip by decoding forward: seeking is inexact for most compressed codecs.
            while index < start:
                if not capture.grab():
                    self._end(index)
                    return
                index += 1
            while stop is None or index < stop:
                if only is not None and index not in only:
                    # grab without retrieve: no copy of the frame into an array
                    if not capture.grab():
                        self._end(index)
                        return
                    index += 1
                    continue
                ok, frame = capture.read()
                if not ok:
                    self._end(index)
                    return
                if not self._raw_grey:
                    frame = _to_grey(frame, 0, "BGR")
                elif frame.ndim == 3:
                    frame = frame[:, :, 0]
                yield index, self._checked(frame, index)
                index += 1
        finally:
            capture.release()

    def _end(self, index: int) -> None:
        if self.n_frames_header is not None and index < self.n_frames_header:
            self._note(
                f"{self.path}: frame {index} cannot be decoded; the header declares "
                f"{self.n_frames_header} frames (truncated file?)"
            )


class TiffReader(VideoReader):
    """Multi-page TIFF, one page per frame, read page by page."""

    reader = "tifffile"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        import tifffile

        try:
            self._tif = tifffile.TiffFile(self.path)
            self.n_frames_header = len(self._tif.pages)
            first = self._tif.pages.first.asarray()
        except Exception as exc:  # tifffile raises many types for corrupt files
            self.close()
            raise VideoError(f"{self.path}: cannot read as TIFF ({exc})") from exc
        if self.n_frames_header == 0:
            raise VideoError(f"{self.path}: zero frames")
        self.dtype = str(first.dtype)
        self._shift = _shift_for(first)
        self._set_size(_to_grey(first, self._shift, "RGB"))

    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()

    def frames(self, start: int = 0, stop: int | None = None,
               only: Container[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        pages = self._tif.pages
        end = len(pages) if stop is None else min(stop, len(pages))
        for index in range(start, end):
            if only is not None and index not in only:
                continue
            try:
                raw = pages[index].asarray()
            except Exception as exc:  # a truncated page: stop, like a truncated stream
                self._note(f"{self.path}: frame {index} cannot be decoded ({exc})")
                return
            try:
                frame = _to_grey(raw, self._shift, "RGB")
            except ValueError as exc:
                raise VideoError(f"{self.path}: frame {index}: {exc}") from exc
            yield index, self._checked(frame, index)


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class FrameFolderReader(VideoReader):
    """A folder of PNG or TIFF files, one frame each, in natural order of their names."""

    reader = "frames"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.files = sorted(
            (p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
            key=lambda p: _natural_key(p.name),
        )
        if not self.files:
            raise VideoError(f"{self.path}: zero frames (no PNG or TIFF files in the folder)")
        self.n_frames_header = len(self.files)
        first = self._load(0)
        self.dtype = str(first.dtype)
        self._shift = _shift_for(first)
        self._set_size(_to_grey(first, self._shift, "BGR"))

    def _load(self, index: int) -> np.ndarray:
        file = self.files[index]
        image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise VideoError(f"{self.path}: frame {index} ({file.name}) cannot be decoded")
        return image

    def frames(self, start: int = 0, stop: int | None = None,
               only: Container[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        end = len(self.files) if stop is None else min(stop, len(self.files))
        for index in range(start, end):
            if only is not None and index not in only:
                continue
            frame = _to_grey(self._load(index), self._shift, "BGR")
            yield index, self._checked(frame, index)


class CineReader(VideoReader):
    """Phantom ``.cine`` through pims."""

    reader = "cine"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        try:
            from pims import Cine
        except ImportError:
            raise VideoError(f"{self.path}: reading Phantom .cine needs the `cine` extra: "
                             "pip install 'rbcflow[cine]' (the pims package)") from None
        try:

            self._cine = Cine(str(self.path))
            self.n_frames_header = len(self._cine)
            rate = float(self._cine.frame_rate)
            first = np.asarray(self._cine.get_frame(0))
        except Exception as exc:  # pims raises many types for foreign files
            self.close()
            raise VideoError(f"{self.path}: cannot read as Phantom cine ({exc})") from exc
        if not self.n_frames_header:
            raise VideoError(f"{self.path}: zero frames")
        self.fps = rate if rate > 0 else None
        self.dtype = str(first.dtype)
        self._shift = _shift_for(first)
        self._set_size(_to_grey(first, self._shift, "RGB"))

    def close(self) -> None:
        cine = getattr(self, "_cine", None)
        if cine is not None:
            cine.close()

    def frames(self, start: int = 0, stop: int | None = None,
               only: Container[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        end = len(self._cine) if stop is None else min(stop, len(self._cine))
        for index in range(start, end):
            if only is not None and index not in only:
                continue
            try:
                raw = np.asarray(self._cine.get_frame(index))
            except Exception as exc:
                self._note(f"{self.path}: frame {index} cannot be decoded ({exc})")
                return
            yield index, self._checked(_to_grey(raw, self._shift, "RGB"), index)


def open_video(path: str | Path) -> VideoReader:
    """Open a recording with the reader its path calls for.

    Raises
    ------
    VideoError
        When the path does not exist, its kind is not supported, or it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        return FrameFolderReader(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return OpenCVReader(path)
    if suffix in TIFF_SUFFIXES:
        return TiffReader(path)
    if suffix in CINE_SUFFIXES:
        return CineReader(path)
    if suffix == ".rtdc":
        from rbcflow.io.rtdc import RtdcReader  # imported here: it builds on this module

        return RtdcReader(path)
    raise VideoError(
        f"{path}: unsupported recording type {suffix!r} (expected one of "
        f"{', '.join(VIDEO_SUFFIXES + TIFF_SUFFIXES + CINE_SUFFIXES + ('.rtdc',))} "
        "or a frame folder)"
    )


def sample_frames(path: str | Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Frames at ``indices``, collected in one sequential pass (no seeking).

    Decoding stops after the last wanted frame. Raises :class:`VideoError` naming the
    indices the file does not reach.
    """
    wanted = {int(i) for i in indices}
    if not wanted:
        return {}
    if min(wanted) < 0:
        raise ValueError(f"negative frame index {min(wanted)}")
    out: dict[int, np.ndarray] = {}
    with open_video(path) as reader:
        for index, frame in reader.frames(0, max(wanted) + 1, only=wanted):
            out[index] = frame.copy()
    missing = sorted(wanted - out.keys())
    if missing:
        raise VideoError(
            f"{path}: frames {missing[:5]}{'...' if len(missing) > 5 else ''} cannot be read "
            f"({len(out)} of {len(wanted)} sampled frames read)"
        )
    return out
