"""Streaming video writers: one frame in, bytes out, nothing held in memory.

High-speed recordings run at 1-2 kHz. FFmpeg's AVI muxer (behind both OpenCV's
``VideoWriter`` and PyAV) cannot store a frame rate above 1000 fps in its stream header and
silently drops frames at such rates, so AVI files are written here by a small RIFF writer
of our own. It stores the exact rate (``dwRate / dwScale``), is byte-for-byte
deterministic, and holds uncompressed 8-bit grey frames (``avi_raw``), JPEG frames
(``mjpg``) or FFV1 packets encoded by PyAV (``ffv1``). OpenCV and FFmpeg decode all three.
``tiff`` writes a multi-page TIFF (BigTIFF when large) page by page with tifffile.

AVI 1.0 limits a file to 4 GiB; longer recordings must use ``tiff``.
"""

from __future__ import annotations

import struct
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rbcflow.io.atomic import atomic_path

VIDEO_FORMATS = ("avi_raw", "ffv1", "mjpg", "tiff")
EXTENSIONS = {"avi_raw": "avi", "ffv1": "avi", "mjpg": "avi", "tiff": "tif"}
_AVI_LIMIT_BYTES = 2**32 - 2**24  # headroom below the 32-bit RIFF size field


def video_extension(video_format: str) -> str:
    """File extension (without dot) of a video format."""
    if video_format not in EXTENSIONS:
        raise ValueError(f"unknown video format {video_format!r}; use one of {VIDEO_FORMATS}")
    return EXTENSIONS[video_format]


def _chunk_header(fourcc: bytes, size: int) -> bytes:
    return fourcc + struct.pack("<I", size)


class _AviFile:
    """Minimal AVI 1.0 writer with one video stream and an ``idx1`` index.

    Sizes that are unknown until the end (RIFF, movi, frame counts) are patched on close.
    """

    def __init__(
        self, handle: BinaryIO, width: int, height: int, fps: float, fourcc: bytes, bits: int
    ):
        self.handle = handle
        self.width, self.height = width, height
        self.n_frames = 0
        self.index: list[tuple[int, int]] = []
        self.max_chunk = 0
        rate = Fraction(fps).limit_denominator(1000)
        self.rate, self.scale = rate.numerator, rate.denominator
        self.fourcc, self.bits = fourcc, bits
        self._write_headers()

    def _write_headers(self) -> None:
        w, h = self.width, self.height
        palette = b""
        strf = (
            struct.pack(
                "<IiiHHIIiiII",
                40,
                w,
                h,
                1,
                self.bits,
                self._compression(),
                self._image_size(),
                0,
                0,
                0,
                0,
            )
            + palette
        )
        usec = int(round(1e6 * self.scale / self.rate))
        avih = struct.pack("<IIIIIIIIII4I", usec, 0, 0, 0x10, 0, 0, 1, 0, w, h, 0, 0, 0, 0)
        strh = struct.pack(
            "<4s4sIHHIIIIIIIIhhhh",
            b"vids",
            self._handler(),
            0,
            0,
            0,
            0,
            self.scale,
            self.rate,
            0,
            0,
            0,
            0xFFFFFFFF,
            0,
            0,
            0,
            w,
            h,
        )
        strl = (
            b"strl"
            + _chunk_header(b"strh", len(strh))
            + strh
            + _chunk_header(b"strf", len(strf))
            + strf
        )
        hdrl = (
            b"hdrl"
            + _chunk_header(b"avih", len(avih))
            + avih
            + _chunk_header(b"LIST", len(strl))
            + strl
        )
        out = self.handle
        out.write(_chunk_header(b"RIFF", 0) + b"AVI ")
        self._hdrl_pos = out.tell()
        out.write(_chunk_header(b"LIST", len(hdrl)) + hdrl)
        self._movi_pos = out.tell()
        out.write(_chunk_header(b"LIST", 0) + b"movi")

    def _compression(self) -> int:
        return struct.unpack("<I", self.fourcc)[0]

    def _handler(self) -> bytes:
        return self.fourcc

    def _image_size(self) -> int:
        return self.height * self.width * self.bits // 8

    def write_chunk(self, payload: bytes, chunk_id: bytes) -> None:
        out = self.handle
        pos = out.tell()
        if pos + len(payload) + 16 * (self.n_frames + 2) > _AVI_LIMIT_BYTES:
            raise OSError(
                f"{getattr(out, 'name', 'AVI file')}: frame {self.n_frames} would exceed the "
                "4 GiB limit of AVI 1.0; write long recordings as tiff"
            )
        out.write(_chunk_header(chunk_id, len(payload)) + payload)
        if len(payload) % 2:
            out.write(b"\0")
        self.index.append((pos - self._movi_pos - 8, len(payload)))
        self.max_chunk = max(self.max_chunk, len(payload))
        self.n_frames += 1

    def close(self) -> None:
        out = self.handle
        end_movi = out.tell()
        flags = 0x10  # AVIIF_KEYFRAME: every frame is independently decodable
        idx = b"".join(
            struct.pack("<4sIII", self._chunk_id(), flags, off, size) for off, size in self.index
        )
        out.write(_chunk_header(b"idx1", len(idx)) + idx)
        end = out.tell()
        out.seek(4)
        out.write(struct.pack("<I", end - 8))
        out.seek(self._movi_pos + 4)
        out.write(struct.pack("<I", end_movi - self._movi_pos - 8))
        # avih: dwTotalFrames at offset 16, dwSuggestedBufferSize at 28 (after 'LIST' size
        # 'hdrl' 'avih' size = 20 bytes).
        avih_data = self._hdrl_pos + 20
        out.seek(avih_data + 16)
        out.write(struct.pack("<I", self.n_frames))
        out.seek(avih_data + 28)
        out.write(struct.pack("<I", self.max_chunk + 8))
        # strh follows avih (56 bytes) + 'LIST' size 'strl' 'strh' size (20 bytes);
        # dwLength is at offset 32 and dwSuggestedBufferSize at 36 of strh.
        strh_data = avih_data + 56 + 20
        out.seek(strh_data + 32)
        out.write(struct.pack("<II", self.n_frames, self.max_chunk))
        out.seek(end)

    def _chunk_id(self) -> bytes:
        return b"00db" if self.fourcc == b"Y800" else b"00dc"


class VideoSink:
    """Write 8-bit grey frames one at a time to a video file, atomically.

    Use as a context manager; the file appears under its final name only after a
    successful close.

    Parameters
    ----------
    path
        Final file name (extension from :func:`video_extension`).
    video_format
        ``avi_raw``, ``ffv1``, ``mjpg`` or ``tiff``.
    width, height
        Frame size in pixels.
    fps
        Frame rate stored in the file header.
    jpeg_quality
        Quality of ``mjpg`` frames (0-100).
    """

    def __init__(
        self,
        path: str | Path,
        video_format: str,
        width: int,
        height: int,
        fps: float,
        jpeg_quality: int = 92,
    ):
        video_extension(video_format)
        self.path = Path(path)
        self.video_format = video_format
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.jpeg_quality = int(jpeg_quality)
        self.n_frames = 0
        self._stack: ExitStack | None = None

    def __enter__(self) -> VideoSink:
        stack = ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            if self.video_format == "tiff":
                import tifffile

                self._tiff = stack.enter_context(tifffile.TiffWriter(tmp, bigtiff=True))
            else:
                handle = stack.enter_context(open(tmp, "wb"))
                fourcc, bits = {
                    "avi_raw": (b"Y800", 8),
                    "mjpg": (b"MJPG", 24),
                    "ffv1": (b"FFV1", 8),
                }[self.video_format]
                self._avi = _AviFile(handle, self.width, self.height, self.fps, fourcc, bits)
                if self.video_format == "ffv1":
                    self._ffv1 = _ffv1_encoder(self.width, self.height, self.fps)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (uint8, shape (height, width))."""
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width):
            raise ValueError(
                f"{self.path}: frame {self.n_frames} has shape {frame.shape} and dtype "
                f"{frame.dtype}; expected ({self.height}, {self.width}) uint8"
            )
        fmt = self.video_format
        if fmt == "tiff":
            self._tiff.write(frame, contiguous=True, photometric="minisblack")
        elif fmt == "avi_raw":
            # Y800: plain 8-bit luma, rows top-down and unpadded.
            self._avi.write_chunk(np.ascontiguousarray(frame).tobytes(), b"00db")
        elif fmt == "mjpg":
            import cv2

            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise OSError(f"{self.path}: JPEG encoding failed at frame {self.n_frames}")
            self._avi.write_chunk(buf.tobytes(), b"00dc")
        else:
            import av

            video_frame = av.VideoFrame.from_ndarray(frame, format="gray")
            video_frame.pts = self.n_frames
            for packet in self._ffv1.encode(video_frame):
                self._avi.write_chunk(bytes(packet), b"00dc")
        self.n_frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        stack, self._stack = self._stack, None
        if exc_type is None and self.video_format != "tiff":
            if self.video_format == "ffv1":
                for packet in self._ffv1.encode(None):
                    self._avi.write_chunk(bytes(packet), b"00dc")
            self._avi.close()
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)


def _ffv1_encoder(width: int, height: int, fps: float):
    try:
        import av
    except ImportError:
        raise RuntimeError("simulating FFV1 video needs the `ffv1` extra: "
                           "pip install 'rbcflow[ffv1]' (the av package)") from None

    codec = av.CodecContext.create("ffv1", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "gray"
    codec.time_base = Fraction(1, max(1, round(fps)))
    # Version 1 keeps all parameters in-band, so the AVI header needs no extradata;
    # one thread keeps the bitstream deterministic.
    codec.options = {"level": "1", "threads": "1", "g": "1"}
    codec.thread_count = 1
    return codec
