"""Local stand-ins for the paper scale's external sources, built here with random weights.

No weights or data sets can be downloaded on a CI machine, so the sd21 smoke run
(config/sd21_smoke.yaml) reads small, seeded copies in the exact formats of the real sources,
through the same loading code as on the cluster:

    sd21/         a StableDiffusionPipeline with SD 2.1's classes and config keys, shrunk (sd21.py)
    coco2017/     MS-COCO 2017's published layout, a few dozen images (coco.py)
    mpnet/        the APTP prompt encoder in sentence-transformers' format, shrunk (encoders.py)
    clip/         a CLIPModel + tokenizer for CLIP score and CP (encoders.py)
    csd/          a CSD `checkpoint.pth` in the released layout + its backbone config (encoders.py)
    prompts/      I2P (CSV), MMA-Diffusion (Parquet), Ring-A-Bell (lines) files (prompt_files.py)

`python -m pruneforget make-standins --out data/standins` writes them all (commands/make_standins.py).
"""
