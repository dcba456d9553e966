"""Loading, building and saving diffusion pipelines at both scales."""
