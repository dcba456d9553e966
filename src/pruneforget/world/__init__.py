"""The tiny shapes-and-styles world and the MS-COCO data preparation.

    spec.py      the `world` config section, validated into a WorldSpec (styles = texture kind + parameters)
    textures.py  texture kinds (stripes, plaid, checker, dots, waves, rings, speckle, plain)
    shapes.py    shape kinds (circle, square, triangle, star, diamond, hexagon, cross)
    render.py    one image: a coloured shape on a background, the texture over both
    captions.py  caption templates and style synonyms
    splits.py    train / val rows (every combination) and D_f, the fine-tuning split
    prompts.py   removal, synonym and retain prompt sets
    tables.py    the data directory contract: file names, columns, readers
    build.py     build_tiny(params, out_dir): the whole tiny data directory
    coco.py      build_coco(cfg, out_dir): the MS-COCO tables (sd21 scale); coco_download.py fetches and verifies
    prompt_sets.py  the shipped paper prompt sets (config/prompts/): artist prompts, ConceptPrune pairs
"""
