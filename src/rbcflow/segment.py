"""The foreground rule of a recording: which pixels of a frame belong to cells.

One rule, used by the tracker, the clip masks, the QC figures and the report's pipeline
panels, so what a user sees in a figure is what the detector saw. It is chosen by the
background method:

- ``median`` / ``rolling_median``: a pixel is foreground when it differs from the
  background image that applies to its frame by more than ``threshold`` grey levels in the
  direction ``polarity`` names, after blurring the frame like the background was blurred
  (:class:`BandSegmenter`, stateless, frames in any order);
- ``mog2`` (seed 000): OpenCV's Gaussian mixture, fed every frame in order from a fresh
  model started on the stored background (:class:`Mog2Segmenter`); ``threshold`` and
  ``polarity`` do not apply. Clip masks of a MOG2 recording still use the band rule: a
  second pass over only the frames a clip needs cannot replay the mixture's state.
"""

from __future__ import annotations

import numpy as np

from rbcflow.background import BackgroundModel, new_mog2, smooth_float
from rbcflow.calibrate import added_blur
from rbcflow.detect import Band, Blobs, background_band, band_mask, blobs_from_mask
from rbcflow.params import DetectParams


class BandSegmenter:
    """Foreground = outside the tolerance band around the background (one pass per frame)."""

    sequential = False

    def __init__(self, background: BackgroundModel, params: DetectParams) -> None:
        self.background = background
        self.params = params.calibrated(background.params.get("noise"))
        self._bands: dict[int, Band] = {}

    def band(self, k: int) -> Band:
        """The tolerance band of background image ``k`` (computed once).

        Frames blurred more than the background was are compared with the background
        blurred by the difference (blurs add in squares), so both sides match.
        """
        band = self._bands.get(k)
        if band is None:
            image = self.background.images[k]
            base = float(self.background.params.get("blur_sigma", 0.0))
            if self.params.blur_sigma > base:
                image = smooth_float(image, added_blur(base, self.params.blur_sigma))
            band = self._bands[k] = background_band(image, self.params)
        return band

    def raw_mask(self, frame: np.ndarray, index: int) -> np.ndarray:
        """uint8 0/255 mask of the frame's foreground pixels (holes not filled)."""
        return band_mask(frame, self.band(self.background.index_at(index)),
                         self.params.blur_sigma)

    def blobs(self, frame: np.ndarray, index: int) -> Blobs:
        """The frame's cells: features and filled masks."""
        return blobs_from_mask(self.raw_mask(frame, index), frame, self.params)


class Mog2Segmenter:
    """Foreground = MOG2's mask; one instance per pass, frames in increasing order."""

    sequential = True

    def __init__(self, background: BackgroundModel, params: DetectParams) -> None:
        self.background = background
        self.params = params.calibrated(background.params.get("noise"))
        self._mog2 = new_mog2(background.params["mog2_history"],
                              background.params["mog2_var_threshold"])
        self._mog2.apply(background.image_u8(0), learningRate=1.0)
        self._last = -1

    def raw_mask(self, frame: np.ndarray, index: int) -> np.ndarray:
        if index <= self._last:
            raise ValueError(f"MOG2 needs frames in increasing order ({index} after "
                             f"{self._last}); make a new segmenter for a new pass")
        self._last = index
        return self._mog2.apply(frame)

    def blobs(self, frame: np.ndarray, index: int) -> Blobs:
        return blobs_from_mask(self.raw_mask(frame, index), frame, self.params)


def make_segmenter(background: BackgroundModel, params: DetectParams
                   ) -> BandSegmenter | Mog2Segmenter:
    """The segmenter a recording's tracking pass uses."""
    if background.method == "mog2":
        return Mog2Segmenter(background, params)
    return BandSegmenter(background, params)


def foreground_at(video_path, background: BackgroundModel, params: DetectParams,
                  frame_index: int) -> np.ndarray:
    """The foreground pixels (uint8 0/1) the tracker sees in one frame of a recording.

    A MOG2 model is fed every frame up to that one, as in the tracking pass.
    """
    from rbcflow.io.video import VideoError, open_video

    segmenter = make_segmenter(background, params)
    only = None if segmenter.sequential else {frame_index}
    with open_video(video_path) as reader:
        for index, frame in reader.frames(0, frame_index + 1, only=only):
            if segmenter.sequential or index == frame_index:
                mask = segmenter.raw_mask(frame, index)
                if index == frame_index:
                    return (mask > 0).astype(np.uint8)
    raise VideoError(f"{video_path}: frame {frame_index} cannot be read")
