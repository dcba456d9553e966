"""A few dozen images in MS-COCO 2017's published layout, for `world.kind: coco` on a CPU.

    root/train2017/000000000001.jpg ...          JPEG, landscape like COCO's 640 x 480 (smaller)
    root/val2017/...
    root/annotations/captions_train2017.json     {info, licenses, images, annotations}
    root/annotations/captions_val2017.json       five captions per image, as COCO

The images are coloured shapes on coloured grounds and the captions say what is drawn, so the
smoke run's fine-tuning data has content a caption can name. `world.coco.build_coco` reads the
copy as it reads the real one (nothing is missing, so nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pruneforget.io import write_json

COLOURS = {"red": (200, 40, 40), "green": (40, 160, 70), "blue": (50, 90, 220), "yellow": (230, 200, 40),
           "white": (235, 235, 235), "black": (25, 25, 25)}
SHAPES = ("circle", "square", "triangle")
TEMPLATES = ("a {c} {s} on a {g} background", "a picture of a {c} {s}", "a {s} painted {c} over {g}",
             "there is a {c} {s} in the middle", "a simple drawing of a {c} {s} on {g}")


def _draw(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, list[str]]:
    names = list(COLOURS)
    colour, ground = rng.choice(len(names), 2, replace=False)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    image = Image.new("RGB", size, COLOURS[names[ground]])
    w, h = size
    r = int(min(w, h) * rng.uniform(0.25, 0.4))
    cx, cy = int(w / 2 + rng.integers(-w // 8, w // 8 + 1)), int(h / 2 + rng.integers(-h // 8, h // 8 + 1))
    box = (cx - r, cy - r, cx + r, cy + r)
    draw = ImageDraw.Draw(image)
    fill = COLOURS[names[colour]]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    captions = [t.format(c=names[colour], s=shape, g=names[ground]) for t in TEMPLATES]
    return image, captions


def build_coco_copy(root: str | Path, train_images: int = 48, val_images: int = 16, seed: int = 0,
                    size: tuple[int, int] = (96, 72)) -> list[str]:
    """Write the copy under `root`; returns every caption (the stand-in tokenizer learns from them)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    corpus: list[str] = []
    next_id, ann_id = 1, 1
    for split, n in (("train2017", train_images), ("val2017", val_images)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for _ in range(n):
            image, captions = _draw(rng, size)
            name = f"{next_id:012d}.jpg"
            image.save(root / split / name, quality=90)
            images.append({"id": next_id, "file_name": name, "width": size[0], "height": size[1], "license": 0,
                           "coco_url": "", "flickr_url": "", "date_captured": ""})
            for caption in captions:
                annotations.append({"id": ann_id, "image_id": next_id, "caption": caption})
                ann_id += 1
            corpus.extend(captions)
            next_id += 1
        write_json(root / "annotations" / f"captions_{split}.json",
                   {"info": {"description": "pruneforget stand-in for COCO 2017 captions"}, "licenses": [],
                    "images": images, "annotations": annotations})
    return corpus
