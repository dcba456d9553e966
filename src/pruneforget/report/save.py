"""Saving figures reproducibly: byte-identical PDFs (no creation date), a PNG and a CSV beside."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pruneforget.io import atomic_file  # noqa: E402


def save_figure(fig: "plt.Figure", out_pdf: str | Path, table: pd.DataFrame | None = None) -> None:
    """Write `out_pdf` (the Snakemake target) last, after its PNG and CSV siblings, all atomically."""
    out_pdf = Path(out_pdf)
    with atomic_file(out_pdf.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=150, format="png", metadata={"Software": None})
    if table is not None:
        with atomic_file(out_pdf.with_suffix(".csv")) as tmp:
            table.to_csv(tmp, index=False)
    with atomic_file(out_pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    plt.close(fig)
