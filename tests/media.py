"""Test media the repository generates: colonoscopy-like H.264 clips and image folders made with PyAV / OpenCV.

Used in place of the CVC-ClinicDB clips when the real data is absent (a fresh clone, a packager's build): the
pipeline, fault-table and security tests then still run. The frames are a drifting, low-frequency pinkish
texture (like mucosa under an endoscope light) with sensor noise, so the P-frames are about as large as real
footage's, and a brighter ellipse (the "polyp"); 384x288 at 25 fps with B-frames and the MP4 index (moov) last,
like the CVC-ClinicDB clips.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 384, 288, 25


def tissue_frames(count: int, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB frames: a texture drifting a few pixels per frame, with a moving bright ellipse."""
    rng = np.random.default_rng(seed)
    pad = 4 * count + 8
    noise = rng.normal(0.0, 1.0, (height // 8 + pad, width // 8 + pad)).astype(np.float32)
    field = cv2.resize(noise, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0.0, 1.0, field.shape).astype(np.float32), (0, 0), 1.2)
    field = cv2.GaussianBlur(field, (0, 0), 6) + 0.6 * fine / (fine.std() + 1e-6) * field.std()
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    frames = []
    for i in range(count):
        shade = field[2 * i : 2 * i + height, 3 * i : 3 * i + width]
        rgb = np.stack([150 + 80 * shade, 60 + 60 * shade, 50 + 40 * shade], axis=-1)
        rgb = np.clip(rgb + rng.normal(0.0, 5.0, rgb.shape), 0, 255).astype(np.uint8)  # sensor noise
        centre = (width // 3 + 3 * i, height // 2 + int(10 * np.sin(i / 4)))
        cv2.ellipse(rgb, centre, (width // 9, height // 8), 20.0 + i, 0, 360, (235, 190, 170), -1)
        frames.append(rgb)
    return frames


def write_clip(path: Path, count: int = 25, *, seed: int = 0, fps: int = FPS) -> Path:
    """An H.264 MP4 (yuv420p, CRF 18, index last) of :func:`tissue_frames`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for image in tissue_frames(count, seed=seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_image_folder(folder: Path, count: int = 12, *, seed: int = 1, suffix: str = ".png") -> Path:
    """``folder/frame_NNN.png``: :func:`tissue_frames` as still images."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(tissue_frames(count, seed=seed)):
        cv2.imwrite(str(folder / f"frame_{i:03d}{suffix}"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder
