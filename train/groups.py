"""Near-duplicate groups, so that frames of one polyp never sit on both sides of a split.

Data sets built from video (NeoPolyp: several frames of one polyp under unrelated file names, often the same scene
under white light and under a colour-enhancing light mode) hold near copies; a split by file would put one frame
in training and its twin in validation and report memorised accuracy.

Perceptual hashes (pHash, dHash) and thumbnail correlation were tried on NeoPolyp first and separate nothing: the
round field of view, the dark lumen and the burnt-in text make unrelated frames as close as twins (64-bit pHash:
unrelated pairs at 12 bits, and links chained all 996 images into one group at 14). What separates them is
geometry: two frames of one scene share many local features that one homography maps onto each other. So:

1. each image's field of view (:mod:`polyp_live.train.fov`) is taken in grey, contrast-equalized (CLAHE: light
   modes differ mostly in contrast and colour), 320 px wide, and gets :data:`FEATURES` ORB features inside an
   ellipse that leaves out the text at the edges, and a 32x32 thumbnail;
2. each image's :data:`CANDIDATES` most correlated thumbnails are candidate twins (the cheap pass);
3. a candidate pair is linked when at least :data:`MIN_INLIERS` ratio-tested ORB matches agree with one RANSAC
   homography; linked images form one group (union-find, so chains join).

:data:`MIN_INLIERS` was chosen by looking at the linked pairs on NeoPolyp: above 20 inliers nearly all are the
same polyp, between 12 and 20 some are, below 12 almost none; 12 errs on the side of grouping (a false link only
keeps two unrelated frames on one side of the split) and still leaves no giant group (largest: 10 of 996).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from polyp_live.train.fov import field_of_view_or_whole

FEATURES = 600
WIDTH = 320
THUMB = 32
CANDIDATES = 12
MIN_INLIERS = 12
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 6.0


@dataclass(frozen=True)
class ImageFeatures:
    """What the grouping needs of one image: ORB keypoint positions and descriptors, and a unit thumbnail."""

    points: np.ndarray  # (k, 2) float32
    descriptors: np.ndarray | None  # (k, 32) uint8
    thumb: np.ndarray  # (THUMB * THUMB,) float32, zero mean, unit norm


def image_features(rgb: np.ndarray) -> ImageFeatures:
    box = field_of_view_or_whole(rgb)
    crop = cv2.cvtColor(rgb[box.y0 : box.y1, box.x0 : box.x1], cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(crop, (WIDTH, max(1, round(WIDTH * crop.shape[0] / crop.shape[1]))),
                      interpolation=cv2.INTER_AREA)
    grey = cv2.createCLAHE(2.0, (8, 8)).apply(grey)
    h, w = grey.shape
    inside = np.zeros_like(grey)
    cv2.ellipse(inside, (w // 2, h // 2), (int(w * 0.45), int(h * 0.45)), 0, 0, 360, 255, -1)
    keypoints, descriptors = cv2.ORB_create(FEATURES).detectAndCompute(grey, inside)
    thumb = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    thumb -= thumb.mean()
    thumb /= float(np.linalg.norm(thumb)) + 1e-6
    points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    return ImageFeatures(points, descriptors, thumb)


def shared_inliers(a: ImageFeatures, b: ImageFeatures) -> int:
    """How many ratio-tested ORB matches between two images agree with one RANSAC homography."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 8 or len(b.points) < 8:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 8:
        return 0
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    _, inliers = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
    return int(inliers.sum()) if inliers is not None else 0


def group_near_duplicates(features: Sequence[ImageFeatures], candidates: int = CANDIDATES,
                          min_inliers: int = MIN_INLIERS) -> list[int]:
    """A group id per image (the smallest index in its group), see the module docstring."""
    parent = list(range(len(features)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if len(features) < 2:
        return parent
    thumbs = np.stack([f.thumb for f in features])
    similarity = thumbs @ thumbs.T
    np.fill_diagonal(similarity, -np.inf)
    checked: set[tuple[int, int]] = set()
    for i in range(len(features)):
        for j in np.argsort(-similarity[i])[:candidates]:
            pair = (min(i, int(j)), max(i, int(j)))
            if pair in checked:
                continue
            checked.add(pair)
            if shared_inliers(features[pair[0]], features[pair[1]]) >= min_inliers:
                a, b = root(pair[0]), root(pair[1])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(features))]
