"""Image grids (Figs. 1, 2, 6): each cell shows its row's model on its column's prompt, checked
pixel by pixel in the saved PNG; a sample set not built is a note and a grey cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_fixtures import write_samples

from pruneforget.report.build import build_figure
from pruneforget.report.grids import grid_cells, grid_mosaic, pick_image, sample_sets
from pruneforget.report.save import save_figure

PROMPTS = ["a red circle in the style of dots", "a blue square in the style of dots", "a red star in the style of dots"]
# colour of (model, promptset, row): every image of the fixture is different
COLOURS = {("base", "remove_dots"): [(250, 0, 0), (0, 250, 0), (0, 0, 250)],
           ("ft-80-kd-pruned-s1", "remove_dots"): [(250, 250, 0), (0, 250, 250), (250, 0, 250)],
           ("base", "retain"): [(120, 60, 0), (0, 60, 120), (60, 120, 0)]}


def make_sets(root):
    return [write_samples(root, m, p, PROMPTS, c) for (m, p), c in COLOURS.items()]


SPEC = {"figure": "fig2", "kind": "grid", "title": "grid", "seeds": [0, 1], "grid_seed": 1,
        "rows": [{"label": "teacher", "model": "base"}, {"label": "distilled", "model": "ft-80-kd-pruned"}],
        "columns": [{"label": "dots #2", "promptset": "remove_dots", "index": 2},
                    {"label": "dots by text", "promptset": "remove_dots", "prompt": PROMPTS[1]},
                    {"label": "retained", "promptset": "retain", "index": 0}]}


def test_pick_image_by_prompt_text_or_row(tmp_path):
    d = write_samples(tmp_path, "base", "remove_dots", PROMPTS + [PROMPTS[1]], COLOURS[("base", "remove_dots")] + [(1, 1, 1)])
    assert pick_image(d, {"prompt": PROMPTS[1]})["file"] == "00001.png"  # the first match
    assert pick_image(d, {"index": 3})["file"] == "00003.png"
    with pytest.raises(ValueError, match="no sample for prompt"):
        pick_image(d, {"prompt": "a green cross"})


def test_grid_places_the_right_image_in_the_right_cell(tmp_path):
    sets = make_sets(tmp_path)
    fig, cells = build_figure(SPEC, samples=sets)
    save_figure(fig, tmp_path / "fig2.pdf", cells)
    expected = [[COLOURS[("base", "remove_dots")][2], COLOURS[("base", "remove_dots")][1], None],
                [COLOURS[("ft-80-kd-pruned-s1", "remove_dots")][2], COLOURS[("ft-80-kd-pruned-s1", "remove_dots")][1], None]]
    expected[0][2] = COLOURS[("base", "retain")][0]
    # The retain set of the distilled model was not built: a note, no image.
    assert cells.loc[5, "note"] == "not built: ft-80-kd-pruned-s1 (samples of retain)" and cells.loc[5, "file"] == ""
    mosaic = grid_mosaic(cells, 2, 3)
    step = mosaic.shape[0] // 2
    png = np.asarray(Image.open(tmp_path / "fig2.png").convert("RGB"))
    ax = fig.axes[0]
    scale = 150 / fig.dpi  # save_figure writes the PNG at 150 dpi
    for i in range(2):
        for j in range(3):
            centre = (step * (j + 0.5), step * (i + 0.5))
            colour = tuple(mosaic[int(centre[1]), int(centre[0])])
            x, y = ax.transData.transform(centre)  # display pixels at fig.dpi, origin bottom left
            # A quarter of a tile off centre: clear of the `not built` text drawn over the grey cell.
            dx, dy = ax.transData.transform((centre[0] + step / 4, centre[1] + step / 4)) - (x, y)
            px = png[int(round(png.shape[0] - (y + dy) * scale)), int(round((x + dx) * scale))]
            want = expected[i][j] if expected[i][j] is not None else (230, 230, 230)
            assert colour == want, (i, j)
            assert np.abs(px.astype(int) - want).max() <= 2, (i, j, px, want)
    csv = pd.read_csv(tmp_path / "fig2.csv", keep_default_na=False)
    assert csv.loc[0, "file"].endswith("base/remove_dots/00002.png") and csv.loc[0, "prompt"] == PROMPTS[2]
    assert csv.loc[4, "model"] == "ft-80-kd-pruned-s1"  # the grid seed's run


def test_grid_rebuilds_byte_identical(tmp_path):
    sets = make_sets(tmp_path)
    for out in ("a", "b"):
        fig, cells = build_figure(SPEC, samples=sets)
        save_figure(fig, tmp_path / out / "fig2.pdf", cells)
    for suffix in (".pdf", ".png", ".csv"):
        assert (tmp_path / "a" / f"fig2{suffix}").read_bytes() == (tmp_path / "b" / f"fig2{suffix}").read_bytes()


def test_grid_tiles_are_resized_to_the_tile_size(tmp_path):
    sets = sample_sets(make_sets(tmp_path))
    cells = grid_cells(sets, [{"label": "t", "model": "base"}], [{"label": "a", "promptset": "retain", "index": 1}])
    mosaic = grid_mosaic(cells, 1, 1, tile=40)
    assert mosaic.shape == (44, 44, 3) and tuple(mosaic[20, 20]) == COLOURS[("base", "retain")][1]
