"""Figures rebuild byte-identical (DVC hashes them) and carry their numbers in a CSV beside them."""

from __future__ import annotations

import pandas as pd

from pruneforget.report.save import save_figure


def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3, 1, 2])
    return fig


def test_saved_figures_are_byte_identical_and_have_their_table(tmp_path):
    table = pd.DataFrame({"x": [0, 1, 2], "y": [3, 1, 2]})
    save_figure(_figure(), tmp_path / "a" / "fig.pdf", table)
    save_figure(_figure(), tmp_path / "b" / "fig.pdf", table)
    for suffix in (".pdf", ".png", ".csv"):
        assert (tmp_path / "a" / f"fig{suffix}").read_bytes() == (tmp_path / "b" / f"fig{suffix}").read_bytes(), suffix
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "fig.csv"), table)
    assert not list((tmp_path / "a").glob(".*tmp*"))
