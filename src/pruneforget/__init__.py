"""pruneforget: pruning, distillation fine-tuning and concept suppression for diffusion models."""

__version__ = "0.1.0"
