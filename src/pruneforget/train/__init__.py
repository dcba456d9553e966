"""Training: the tiny base model (VAE, teacher UNet); later losses, the loop, fine-tuning, bilevel."""
