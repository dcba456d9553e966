"""Training: the one loop (loop.py) and what runs on it.

    objective.py  objectives, loop settings, schedules          loop.py      the accelerate loop
    batches.py    position-addressed seeded batches             data.py      D_f encoded once or streamed
    base.py       the tiny teacher UNet ("teacher")             vae.py       the tiny VAE ("vae")
    classifier.py the ground-truth evaluator ("evaluator")      finetune.py  Eq. 8 fine-tuning ("ft")
    losses.py     diffusion, output and feature KD losses       features.py  block-output hooks
    evaluate.py   periodic evaluation of a run                  run.py       a fine-tuning run's inputs and directory

APTP ("aptp", prune/aptp_train.py), ESD (unlearn/) and the bilevel method (bilevel/) run on the
same loop from the layers above.
"""
