"""The uploaded level model under the analytics heatmap.

A level model is whatever the game uploaded to ``POST /api/models`` (the blob store keeps
the bytes, ``level_models`` the metadata). Two kinds can be drawn without a 3D engine:

- a Wavefront OBJ mesh (text ``v x y z`` and ``f a b c`` lines): its faces are projected on
  the heatmap's floor plane and drawn as outlines, in the same coordinates as the positions,
  so the grid covers both the model and the paths;
- a top-down image (PNG, JPEG, GIF, WebP): stretched under the grid, over the positions' bounds.

Anything else (a glTF, an engine's own format) is named with its size: the page says the
model exists but cannot be drawn here. The file is read whole, so models over
``MAX_DRAWN_BYTES`` are named, not drawn.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

MAX_DRAWN_BYTES = 16 * 1024 * 1024
MAX_FACES = 20_000  # enough for a level's floor plan; keeps the page small
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
Bounds = tuple[float, float, float, float]  # x0, x1, v0, v1 on the floor plane


@dataclass
class Mesh:
    faces: list[list[tuple[float, float]]] = field(default_factory=list)

    @property
    def bounds(self) -> Bounds | None:
        xs = [x for face in self.faces for x, _ in face]
        vs = [v for face in self.faces for _, v in face]
        return (min(xs), max(xs), min(vs), max(vs)) if xs else None


def is_obj(filename: str, content_type: str) -> bool:
    return filename.lower().endswith(".obj") or content_type in ("model/obj", "text/x-obj")


def parse_obj(data: bytes, floor: str) -> Mesh:
    """Faces of an OBJ file projected on the floor plane: ``floor`` "z" → (x, z), "y" → (x, y).

    Lines that are not well-formed vertices or faces are skipped (a model is the game's
    file, not ours to refuse); face indices may be negative (relative) or carry /vt/vn."""
    vertices: list[tuple[float, float, float]] = []
    mesh = Mesh()
    for raw in data.decode("utf-8", "replace").splitlines():
        parts = raw.split()
        if len(parts) >= 4 and parts[0] == "v":
            try:
                vertices.append((float(parts[1]), float(parts[2]), float(parts[3])))
            except ValueError:
                continue
        elif len(parts) >= 4 and parts[0] == "f" and len(mesh.faces) < MAX_FACES:
            face = []
            for ref in parts[1:]:
                try:
                    index = int(ref.split("/")[0])
                except ValueError:
                    break
                index = index - 1 if index > 0 else len(vertices) + index
                if not 0 <= index < len(vertices):
                    break
                x, y, z = vertices[index]
                face.append((x, z if floor == "z" else y))
            else:
                mesh.faces.append(face)
    return mesh


def union(a: Bounds | None, b: Bounds | None) -> Bounds | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def outlines(mesh: Mesh, bounds: Bounds, cells: int) -> list[str]:
    """SVG ``points`` of each face in grid coordinates (row 0 at the top, as the heatmap)."""
    x0, x1, v0, v1 = bounds
    sx, sv = cells / max(x1 - x0, 1e-9), cells / max(v1 - v0, 1e-9)
    return [" ".join(f"{(x - x0) * sx:.3f},{cells - (v - v0) * sv:.3f}" for x, v in face) for face in mesh.faces]


def image_data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
