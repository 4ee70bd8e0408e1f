"""The console page of the docs runs as written (on a Qt-free ViewerModel)."""

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize("points_scale", [(0.25, 0.25), (1.0, 1.0)])  # the image's, or napari's New points button's
def test_console_page_runs(tmp_path, monkeypatch, points_scale):
    monkeypatch.chdir(tmp_path)  # the page saves lesions.csv in the working folder
    from napari.components import ViewerModel

    from napari_calcinosis._napari import sample_finger

    viewer = ViewerModel()
    for data, kwargs, kind in sample_finger():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    clicked_mm = np.array([[254.0, 143.0], [129.0, 161.0]]) * 0.25  # where the two deposits are, in mm
    viewer.add_points(clicked_mm / np.asarray(points_scale), name="seeds", scale=points_scale)
    page = (Path(__file__).parents[1] / "docs" / "console.md").read_text()
    namespace = {"viewer": viewer}
    exec(page.split("```python")[1].split("```")[0], namespace)
    table = namespace["result"].table
    assert list(table["status"]) == ["ok", "ok"]
    assert set(table["image"]) == {"sample_finger"}  # named by the layer: two scans' rows stay apart
    assert set(viewer.layers["lesions"].features["image"]) == {"sample_finger"}
    assert isinstance(namespace["result"].warnings, list)
    assert (tmp_path / "lesions.csv").exists()
    assert "lesions" in viewer.layers and tuple(viewer.layers["lesions"].scale) == (0.25, 0.25)
    truth = np.loadtxt(Path(__file__).parents[1] / "src/napari_calcinosis/data/sample_finger_truth.csv", delimiter=",",
                       skiprows=1, usecols=1)
    assert np.allclose(table["area_mm2"], truth[:2], rtol=0.2)
