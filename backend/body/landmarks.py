"""Where smplx's keypoints live on the stand-in: the 21 hard-coded keypoint vertices, the 51 static
face landmarks and the 17 face-contour landmarks.

The 21 vertex indices are fixed by smplx (joints.EXTRA_VERTEX_IDS), so the generator chooses the
body vertex that best matches each name (nose tip, ear, fingertip, toe, heel) and then renumbers
the body's vertices so that each chosen vertex gets the index smplx expects.
"""

from __future__ import annotations

import numpy as np

from backend.mesh.closest import closest_on_triangles

from .anatomy import fingertip
from .joints import EXTRA_VERTEX_IDS


def _mirror(p: np.ndarray) -> np.ndarray:
    return p * np.array([-1.0, 1.0, 1.0])


def keypoint_targets() -> dict[str, np.ndarray]:
    """Ideal position of each of smplx's 21 keypoint vertices (eyes handled by the eye caps)."""
    t: dict[str, np.ndarray] = {
        "nose": np.array([0.0, 0.399, 0.135]),
        "lear": np.array([0.095, 0.42, -0.012]),
        "LBigToe": np.array([0.088, -1.165, 0.2]),
        "LSmallToe": np.array([0.152, -1.17, 0.175]),
        "LHeel": np.array([0.11, -1.17, -0.095]),
    }
    t["rear"] = _mirror(t["lear"])
    for name in ("BigToe", "SmallToe", "Heel"):
        t["R" + name] = _mirror(t["L" + name])
    for side, prefix in (("left", "l"), ("right", "r")):
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            # aim a little beyond the tip so the chosen vertex is the extreme one
            t[prefix + finger] = fingertip(side, finger)
    return t


def choose_keypoint_vertices(vertices: np.ndarray) -> dict[str, int]:
    """Body vertex index (before renumbering) for each keypoint except the eyes."""
    chosen: dict[str, int] = {}
    for name, target in keypoint_targets().items():
        d = np.linalg.norm(vertices - target, axis=1)
        for taken in chosen.values():
            d[taken] = np.inf
        chosen[name] = int(d.argmin())
    return chosen


def renumber_for_keypoints(
    vertices: np.ndarray, faces: np.ndarray, chosen: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Renumber body vertices so that ``chosen[name]`` gets index EXTRA_VERTEX_IDS[name].

    Returns the new vertices and faces. Vertices not named keep their relative order.
    """
    n = len(vertices)
    order = np.full(n, -1, dtype=np.int64)  # order[new] = old
    for name, old in chosen.items():
        order[EXTRA_VERTEX_IDS[name]] = old
    rest = np.setdiff1d(np.arange(n), list(chosen.values()), assume_unique=False)
    order[order < 0] = rest
    new_of_old = np.empty(n, dtype=np.int64)
    new_of_old[order] = np.arange(n)
    return vertices[order], new_of_old[faces]


def static_face_landmark_targets() -> np.ndarray:
    """(51, 3) targets in smplx's landmark order: brows (R outer->inner, L inner->outer), nose
    ridge top->tip, nostril base R->L, right eye (outer, upper x2, inner, lower x2), left eye
    (inner, upper x2, outer, lower x2), outer lip contour from the right corner over the top and
    back along the bottom, inner lip contour the same way."""
    pts: list[tuple[float, float, float]] = []
    brow = [(-0.052, 0.446), (-0.044, 0.452), (-0.034, 0.455), (-0.024, 0.454), (-0.013, 0.45)]
    pts += [(x, y, 0.09) for x, y in brow]
    pts += [(-x, y, 0.09) for x, y in reversed(brow)]
    pts += [(0.0, 0.433 - 0.011 * k, 0.1 + 0.008 * k) for k in range(4)]
    pts += [(x, 0.389, 0.105) for x in (-0.016, -0.008, 0.0, 0.008, 0.016)]
    eye = [(-0.045, 0.425), (-0.037, 0.431), (-0.027, 0.431), (-0.018, 0.425), (-0.027, 0.42), (-0.037, 0.42)]
    pts += [(x, y, 0.09) for x, y in eye]
    # left eye starts at its inner corner (mirror of right_eye4) and goes over the top outwards
    left_order = [3, 2, 1, 0, 5, 4]
    pts += [(-eye[i][0], eye[i][1], 0.09) for i in left_order]
    outer = [
        (-0.026, 0.36),
        (-0.017, 0.366),
        (-0.007, 0.369),
        (0.0, 0.368),
        (0.007, 0.369),
        (0.017, 0.366),
        (0.026, 0.36),
        (0.017, 0.352),
        (0.008, 0.349),
        (0.0, 0.348),
        (-0.008, 0.349),
        (-0.017, 0.352),
    ]
    pts += [(x, y, 0.1) for x, y in outer]
    inner = [
        (-0.02, 0.36),
        (-0.008, 0.362),
        (0.0, 0.362),
        (0.008, 0.362),
        (0.02, 0.36),
        (0.008, 0.357),
        (0.0, 0.357),
        (-0.008, 0.357),
    ]
    pts += [(x, y, 0.1) for x, y in inner]
    return np.asarray(pts)


def contour_targets(yaw_bin_angle: float = 0.0) -> np.ndarray:
    """(17, 3) jaw line from the right ear over the chin to the left ear, for one yaw bin.

    ``yaw_bin_angle`` (degrees) is smplx's bin angle: -(head yaw about +y), so a positive value
    means the camera sees more of the head's left (+x) side. The contour on the side turning away
    slides round to where that side's silhouette is; the near side stays on its jaw line (a
    ramp in between, the chin moving half way).
    """
    theta = np.linspace(-np.pi / 2, np.pi / 2, 17)
    alpha = np.radians(yaw_bin_angle)
    towards_left = (theta + np.pi / 2) / np.pi  # 0 at the right ear, 1 at the left ear
    ramp = 1.0 - towards_left if alpha >= 0 else towards_left
    theta = np.clip(theta + alpha * ramp, -np.pi / 2, np.pi / 2)
    return np.stack(
        [0.075 * np.sin(theta), 0.305 + 0.105 * (1 - np.cos(theta)), 0.01 + 0.085 * np.cos(theta)], axis=1
    )


def yaw_bin_angles(n_bins: int = 79) -> np.ndarray:
    """smplx's bin b holds angle b for b <= 39 and 39 - b above (40 -> -1 ... 78 -> -39)."""
    half = (n_bins - 1) // 2
    bins = np.arange(n_bins)
    return np.where(bins <= half, bins, half - bins).astype(np.float64)


def project_to_faces(
    vertices: np.ndarray, faces: np.ndarray, targets: np.ndarray, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Face index and barycentric coordinates of each target's nearest surface point.

    The search starts from the nearest ``allowed`` vertex and takes, among its faces, the one whose
    exact closest point (``backend.mesh.closest``) is nearest to the target.
    """
    face_ids = np.zeros(len(targets), dtype=np.int64)
    bary = np.zeros((len(targets), 3))
    candidates = np.nonzero(allowed)[0]
    for i, t in enumerate(targets):
        nearest = candidates[np.linalg.norm(vertices[candidates] - t, axis=1).argmin()]
        ring = np.nonzero((faces == nearest).any(axis=1))[0]
        tri = vertices[faces[ring]]  # (k,3,3)
        w = closest_on_triangles(np.asarray(t)[None], tri[:, 0], tri[:, 1], tri[:, 2])
        best = np.linalg.norm((w[:, :, None] * tri).sum(1) - t, axis=1).argmin()
        face_ids[i], bary[i] = ring[best], w[best]
    return face_ids, bary
