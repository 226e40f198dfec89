"""Level models under the heatmap: OBJ faces on the floor plane, malformed lines skipped."""

from __future__ import annotations

import pytest

from services.console import level_model
from services.console.game_pages import heatmap

pytestmark = pytest.mark.unit


def test_obj_faces_are_projected_on_the_floor_plane() -> None:
    obj = b"v 0 5 0\nv 4 5 0\nv 4 5 8\nv x y z\nf 1/1/1 2//1 3\nf -3 -2 -1\nf 1 2 7\nf 1 a 2\nvn 0 1 0\n"
    mesh = level_model.parse_obj(obj, "z")
    assert mesh.faces == [[(0.0, 0.0), (4.0, 0.0), (4.0, 8.0)], [(0.0, 0.0), (4.0, 0.0), (4.0, 8.0)]]
    assert mesh.bounds == (0.0, 4.0, 0.0, 8.0)
    assert level_model.parse_obj(obj, "y").faces[0] == [(0.0, 5.0), (4.0, 5.0), (4.0, 5.0)]
    assert level_model.parse_obj(b"\xff\xfe garbage", "z").bounds is None


def test_the_grid_grows_to_the_models_bounds() -> None:
    paths = [{"xs": [1.0, 2.0], "ys": [0.0, 0.0], "zs": [1.0, 2.0]}]
    assert heatmap(paths)["bounds"] == (1.0, 2.0, 1.0, 2.0)
    grown = heatmap(paths, extra=(0.0, 4.0, 0.0, 8.0))
    assert grown["bounds"] == (0.0, 4.0, 0.0, 8.0) and grown["points"] == 2
    square = level_model.Mesh([[(0.0, 0.0), (4.0, 8.0)]])
    assert level_model.outlines(square, (0.0, 4.0, 0.0, 8.0), 40) == ["0.000,40.000 40.000,0.000"]
