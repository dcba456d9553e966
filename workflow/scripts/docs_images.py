#!/usr/bin/env python
"""The README's pictures, copied from built figures into docs/ (committed, so the README shows
results before anything is built):

    snakemake --cores 2 figures/table1.pdf figures/fig2.pdf    # build them (tiny world)
    python workflow/scripts/docs_images.py                     # docs/table1.png, docs/fig2.png

Each PNG is re-encoded at most `--width` pixels wide (the figures are drawn at print resolution);
a figure that is not built yet fails naming the command that builds it, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PICTURES = ("table1", "fig2")  # Table 1 and the image grid of removal prompts per method


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", type=Path, default=ROOT / "figures", help="where the built figures are")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the README's pictures go")
    parser.add_argument("--width", type=int, default=1400, help="largest width in pixels")
    args = parser.parse_args(argv)
    sources = [args.figures / f"{name}.png" for name in PICTURES]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        targets = " ".join(f"figures/{name}.pdf" for name in PICTURES)
        print(f"docs_images: {', '.join(missing)} not built; run `snakemake --cores 2 {targets}` first", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        with Image.open(source) as image:
            image = image.convert("RGB")
            if image.width > args.width:
                image = image.resize((args.width, round(image.height * args.width / image.width)), Image.Resampling.LANCZOS)
            image.save(args.out / source.name, optimize=True)
        print(f"docs_images: wrote {args.out / source.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
