"""What a track is made of: one :class:`TrackFrame` per input frame and the :class:`TrackIdentity` they share.

Written by ``fit3dmm track`` (:mod:`fit3dmm.api.tracking`) and read by the track writers
(:mod:`fit3dmm.io.track_files`, :mod:`fit3dmm.io.gltf`).  Arrays are numpy, one face per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRACK_OK = "ok"
"""The frame was fitted."""
TRACK_NO_FACE = "no_face"
"""No usable face in the frame: a gap (values NaN) unless ``--fill`` interpolates it."""
TRACK_FILLED = "filled"
"""A gap interpolated from its neighbours (only with ``--fill``)."""
TRACK_STATUSES = (TRACK_OK, TRACK_NO_FACE, TRACK_FILLED)


@dataclass
class TrackFrame:
    """One input frame of a track.

    Attributes:
        frame: index of the frame in the input (video frame number or position in the sorted frame list).
        time: seconds from the start of the input (frame / fps for a video).
        status: one of :data:`TRACK_STATUSES`.
        expression: (E,) float32 expression weights (ARKit blendshapes for ICT), NaN in a gap.
        rotation: (3,) float32 axis-angle of the head rotation (X_cam = R X + t), NaN in a gap.
        translation: (3,) float32 head translation in cm (camera space), NaN in a gap.
        pose_deg: (3,) float32 yaw, pitch, roll in degrees (README, Conventions), NaN in a gap.
        landmark_error: mean distance of the fitted to the detected 68 landmarks in photo pixels (NaN in a gap).
    """

    frame: int
    time: float
    status: str
    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    pose_deg: np.ndarray
    landmark_error: float = float("nan")

    @staticmethod
    def gap(frame: int, time: float, num_expression: int, status: str = TRACK_NO_FACE) -> TrackFrame:
        """A frame without a face: every value NaN."""
        nan = np.full(3, np.nan, np.float32)
        return TrackFrame(frame, time, status, np.full(num_expression, np.nan, np.float32), nan.copy(), nan.copy(),
                          nan.copy())


@dataclass
class TrackIdentity:
    """The identity shared by every frame of a track.

    Attributes:
        identity: (K,) float32 identity coefficients.
        model: the face model's ``describe()`` (name, checksum, ...).
        expression_names: names of the expression coefficients, in order.
        keyframes: input frame indices the identity was fitted on.
        focal: the camera focal length in photo pixels (the track's camera, fixed).
        photo_size: (W, H) of the frames.
        fps: frames per second of the input (30 for frame folders unless given).
    """

    identity: np.ndarray
    model: dict[str, str]
    expression_names: list[str]
    keyframes: list[int] = field(default_factory=list)
    focal: float = 0.0
    photo_size: tuple[int, int] = (0, 0)
    fps: float = 1.0
