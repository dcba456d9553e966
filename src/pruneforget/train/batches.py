"""Seeded, position-addressed training batches: sample position p -> (example, noise, timestep).

Every random choice of a training sample (which example, its latent sample, its noise, its
timestep, whether its caption is dropped) is a function of (seed, p) only. So a batch does not
depend on how the effective batch is split into micro-batches, processes or accumulation steps,
and a resumed run sees exactly the samples an uninterrupted one would, with no RNG state to
restore. The example order is a fresh seeded permutation per epoch (every example once per epoch).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from pruneforget.models.diffusion import diffusion_target


def sample_generator(seed: int, position: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one sample, seeded from (seed, stream, position) through SeedSequence,
    so neighbouring positions get unrelated streams."""
    state = np.random.SeedSequence([seed, stream, position]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def sample_draws(seed: int, position: int, shape, num_timesteps: int,
                 caption_dropout: float = 0.0) -> tuple[Tensor, Tensor, int, bool]:
    """The draws of one denoising sample, in one order for every batch source: the latent's
    posterior noise z, the diffusion noise, the timestep, and whether its caption is dropped."""
    g = sample_generator(seed, position)
    z = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    t = int(torch.randint(num_timesteps, (1,), generator=g))
    dropped = float(torch.rand(1, generator=g)) < caption_dropout
    return z, noise, t, dropped


class EpochOrder:
    """Sample position -> example index: epoch e = p // n visits a seeded permutation of range(n)."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("a training set needs at least one example")
        self.n, self.seed = n, seed
        self._perms: dict[int, Tensor] = {}

    def __call__(self, position: int) -> int:
        epoch, i = divmod(position, self.n)
        if epoch not in self._perms:
            if len(self._perms) > 2:  # positions only move forward; keep a few epochs
                self._perms.pop(min(self._perms))
            self._perms[epoch] = torch.randperm(self.n, generator=sample_generator(self.seed, epoch, stream=1))
        return int(self._perms[epoch][i])


class LatentTextPairs:
    """Denoising batches from precomputed VAE posteriors and text embeddings (tiny scale, or any
    set small enough to encode once): the fine-tuning data D_f of Eq. 8.

    A sample at position p: example i = order(p); latent x0 = (mean_i + std_i * z) * scale;
    noise ~ N(0, I); t ~ U{0..T-1}; caption replaced by "" with probability `caption_dropout`.
    The batch holds x0, noise, t, the noisy latent x_t, the diffusion target and the text.
    """

    def __init__(self, mean: Tensor, std: Tensor, caption_index: Tensor, embeddings: Tensor, empty_index: int,
                 scaling_factor: float, scheduler, seed: int, caption_dropout: float = 0.0):
        self.mean, self.std, self.caption_index = mean, std, caption_index
        self.embeddings, self.empty_index = embeddings, empty_index
        self.scale, self.scheduler, self.seed = scaling_factor, scheduler, seed
        self.caption_dropout = caption_dropout
        self.order = EpochOrder(len(mean), seed)

    def __len__(self) -> int:
        return len(self.mean)

    def __call__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        idx, z, noise, t, text = [], [], [], [], []
        shape = self.mean.shape[1:]
        for p in positions:
            i = self.order(p)
            idx.append(i)
            zi, ni, ti, dropped = sample_draws(self.seed, p, shape, self.scheduler.config.num_train_timesteps,
                                               self.caption_dropout)
            z.append(zi), noise.append(ni), t.append(ti)
            text.append(self.empty_index if dropped else int(self.caption_index[i]))
        idx_t = torch.tensor(idx)
        x0 = (self.mean[idx_t] + self.std[idx_t] * torch.stack(z)) * self.scale
        return denoising_batch(self.scheduler, x0, torch.stack(noise), torch.tensor(t), self.embeddings[torch.tensor(text)])


def denoising_batch(scheduler, x0: Tensor, noise: Tensor, t: Tensor, text: Tensor) -> dict[str, Tensor]:
    """The tensors a denoising step needs: x_t (forward-noised x0), its diffusion target, t, text."""
    return {"x0": x0, "noise": noise, "timesteps": t, "noisy": scheduler.add_noise(x0, noise, t),
            "target": diffusion_target(scheduler, x0, noise, t), "text": text}
