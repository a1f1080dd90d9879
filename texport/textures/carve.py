"""An object carved from a solid texture, rendered: what a volume looks like on a surface.

Three orthogonal slices show a volume's faces, not how its structures run through it; a carved
object shows both, as solid textures are used (Gutierrez et al. 2020 carve statues and cubes with a
corner cut away). The renderer is a plain orthographic ray marcher in numpy: each pixel's ray steps
through the volume until it enters the object (a signed distance function: a cube with its corner
towards the camera cut away, or a sphere), the colour is the volume's voxel there (trilinear), and
Lambert shading with an ambient term gives the shape.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("cube", "sphere")


def _sdf(p: np.ndarray, shape: str, centre: np.ndarray, half: float) -> np.ndarray:
    """Signed distance (voxels) of points p [..., 3] to the object: negative inside."""
    q = p - centre
    if shape == "sphere":
        return np.linalg.norm(q, axis=-1) - half
    box = np.abs(q).max(axis=-1) - half
    corner = (-q).max(axis=-1)  # the octant x, y, z > centre (towards the camera), inside where < 0
    return np.maximum(box, -corner)


def _trilinear(volume: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The volume [D, H, W, 3] at points p [N, 3] in (x, y, z) voxel coordinates (voxel centres at integers)."""
    d, h, w = volume.shape[:3]
    p = np.clip(p, 0, [w - 1, h - 1, d - 1])
    i0 = np.floor(p).astype(np.int64)
    i1 = np.minimum(i0 + 1, [w - 1, h - 1, d - 1])
    f = (p - i0)[:, :, None]
    out = 0.0
    for cx in (0, 1):
        for cy in (0, 1):
            for cz in (0, 1):
                x = (i1 if cx else i0)[:, 0]
                y = (i1 if cy else i0)[:, 1]
                z = (i1 if cz else i0)[:, 2]
                weight = (f[:, 0] if cx else 1 - f[:, 0]) * (f[:, 1] if cy else 1 - f[:, 1]) * (f[:, 2] if cz else 1 - f[:, 2])
                out = out + weight * volume[z, y, x]
    return out


def render_carved(volume: np.ndarray, shape: str = "cube", size: int = 256, background: float = 1.0) -> np.ndarray:
    """An image [size, size, 3] float32 in [0, 1] of `shape` carved from `volume` ([D, H, W, 3], uint8 or
    float in [0, 1]), seen from the (+x, +y, +z) diagonal; the object fills the volume less a voxel."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    vol = volume.astype(np.float32) / (255.0 if volume.dtype == np.uint8 else 1.0)
    d, h, w = vol.shape[:3]
    centre = np.array([w - 1, h - 1, d - 1], dtype=np.float64) / 2
    half = min(w, h, d) / 2 - 1.0
    view = -np.ones(3) / np.sqrt(3)  # from the camera into the scene
    right = np.array([1.0, 0.0, -1.0]) / np.sqrt(2)
    up = np.cross(right, view)
    extent = half * 1.8
    u = np.linspace(-extent, extent, size)
    uu, vv = np.meshgrid(u, -u)
    origins = centre + uu[..., None] * right + vv[..., None] * up - view * 2 * half * 1.8
    origins = origins.reshape(-1, 3)
    step = 0.5
    t = np.zeros(len(origins))
    hit = np.zeros(len(origins), dtype=bool)
    for _ in range(int(4 * half * 1.8 / step) + 2):  # march with the distance bound, at least half a voxel
        live = ~hit
        if not live.any():
            break
        p = origins[live] + t[live, None] * view
        dist = _sdf(p, shape, centre, half)
        inside = dist <= 0
        idx = np.flatnonzero(live)
        hit[idx[inside]] = True
        t[idx[~inside]] += np.maximum(dist[~inside], step)
    image = np.full((len(origins), 3), background, dtype=np.float32)
    if hit.any():
        p = origins[hit] + t[hit, None] * view
        eps = 0.5
        normal = np.stack([_sdf(p + e, shape, centre, half) - _sdf(p - e, shape, centre, half)
                           for e in np.eye(3) * eps], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
        light = np.array([0.5, 0.8, 0.9]) / np.linalg.norm([0.5, 0.8, 0.9])
        shade = 0.45 + 0.55 * np.clip(normal @ light, 0, 1)
        image[hit] = np.clip(_trilinear(vol, p) * shade[:, None], 0, 1)
    return image.reshape(size, size, 3)
