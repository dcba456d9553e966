"""APTP's prompt router: prompt encoder -> architecture predictor -> nearest of N architecture codes.

PAPER_FACTS section 2. A frozen sentence transformer embeds the prompt (mean pooling); the
architecture predictor (one linear layer per width group plus one for all depth gates) maps the
embedding into the code space; the router picks the code nearest by cosine similarity (argmax at
inference; Sinkhorn-balanced during pruning, see `sinkhorn.py`).

The code space. The paper leaves the mapping from a code to gates unstated; we take the simplest
design that matches it and the authors' code (whose codebook vectors have one entry per gate):
a code embedding IS a vector of gate logits, one entry per prunable unit, width groups first
(in layout order), then the depth gates. The "decoder" from a code to per-group gate logits is
therefore the split of that vector by group plus a constant `offset` (the authors' `base`) that
starts every gate open, so pruning begins at the full model and the resource loss closes gates.
Cosines are taken between architecture embeddings: the gates' probabilities sigmoid(logit / tau),
each group scaled by 1/sqrt(units) so that every group weighs the same whatever its size.

Two gate samplers (`RouterConfig.gumbel`, config `prune.aptp.gumbel`): `logistic`, the
Gumbel-sigmoid with zero-mean logistic noise and noise-free gates at extraction; `authors`, the
authors' code: one Gumbel sample (mean 0.577), depth gates from a cumulative softmax over the depth
entries in `depth_order` (`gumbel.importance_logits`), width groups that keep at least one unit, and
the noise of seed 0 (not none) when a code's expert is extracted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from pruneforget.prune.gumbel import NOISES, gumbel_sigmoid, hard_gates, importance_logits, keep_one_unit, straight_through
from pruneforget.prune.sinkhorn import balanced_assignment

MINILM = "minilm"  # the tiny world's shipped all-MiniLM-L6-v2 (see models/text.py)


class PromptEncoder(nn.Module):
    """A frozen sentence transformer: mean of the last hidden states over the prompt's tokens,
    L2-normalised (what all-MiniLM-L6-v2 and all-mpnet-base-v2 compute as sentence embeddings)."""

    def __init__(self, name: str, max_length: int = 128):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from pruneforget.models.text import minilm_path

        path = minilm_path() if name == MINILM else name
        self.name, self.max_length = name, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).requires_grad_(False).eval()

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> Tensor:
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tokens = tokens.to(self.model.device)
        hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(pooled.float(), dim=-1)


@dataclass(frozen=True)
class GateLayout:
    """The prunable groups in code order: width groups, then depth groups (names and unit counts)."""

    width: tuple[tuple[str, int], ...]
    depth: tuple[tuple[str, int], ...]

    @classmethod
    def from_groups(cls, groups) -> "GateLayout":
        """From prune-core's `prunable_groups` (Group objects: name, units, is_depth)."""
        width = tuple((g.name, int(g.units)) for g in groups if not g.is_depth)
        depth = tuple((g.name, int(g.units)) for g in groups if g.is_depth)
        return cls(width, depth)

    @property
    def groups(self) -> tuple[tuple[str, int], ...]:
        return self.width + self.depth

    @property
    def dim(self) -> int:
        """Length of a code: one entry per gate."""
        return sum(n for _, n in self.groups)

    @property
    def depth_units(self) -> int:
        return sum(n for _, n in self.depth)

    def split(self, vectors: Tensor) -> dict[str, Tensor]:
        """(B, dim) -> {group name: (B, units)}, the per-group slices of code-space vectors."""
        parts = vectors.split([n for _, n in self.groups], dim=-1)
        return {name: part for (name, _), part in zip(self.groups, parts)}

    def group_weights(self) -> Tensor:
        """(dim,) 1/sqrt(units) of each entry's group: every group has the same norm in a cosine."""
        return torch.cat([torch.full((n,), 1.0 / math.sqrt(n)) for _, n in self.groups])

    def to_json(self) -> dict:
        return {"width": [list(g) for g in self.width], "depth": [list(g) for g in self.depth]}

    @classmethod
    def from_json(cls, obj: dict) -> "GateLayout":
        return cls(tuple((n, int(u)) for n, u in obj["width"]), tuple((n, int(u)) for n, u in obj["depth"]))


class ArchitecturePredictor(nn.Module):
    """Prompt embedding -> code-space vector: one linear layer per width group, one for all depth gates."""

    def __init__(self, layout: GateLayout, embed_dim: int):
        super().__init__()
        self.width = nn.ModuleList(nn.Linear(embed_dim, n) for _, n in layout.width)
        self.depth = nn.Linear(embed_dim, layout.depth_units) if layout.depth_units else None

    def forward(self, prompt_embeddings: Tensor) -> Tensor:
        heads = [head(prompt_embeddings) for head in self.width]
        if self.depth is not None:
            heads.append(self.depth(prompt_embeddings))
        return torch.cat(heads, dim=-1)


@dataclass(frozen=True)
class RouterConfig:
    """Everything needed to rebuild a router (saved as router_config.json beside its weights)."""

    layout: GateLayout
    embed_dim: int
    n_codes: int
    prompt_encoder: str
    offset: float = 3.0
    temperature: float = 0.4
    gumbel: str = "logistic"
    depth_order: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.gumbel not in NOISES:
            raise ValueError(f"prune.aptp.gumbel {self.gumbel!r} is not one of {NOISES}")
        if self.depth_order is not None:
            n = self.layout.depth_units
            if not n or sorted(i % n for i in self.depth_order) != list(range(n)):
                raise ValueError(f"prune.aptp.depth_order {list(self.depth_order)} is not a permutation of this "
                                 f"UNet's {n} depth gates (indices mod {n}); use null for layout order")
            object.__setattr__(self, "depth_order", tuple(self.depth_order))

    def to_json(self) -> dict:
        obj = asdict(self)
        obj["layout"] = self.layout.to_json()
        obj["depth_order"] = None if self.depth_order is None else list(self.depth_order)
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> "RouterConfig":
        """A router_config.json; one written before the gate samplers existed is `logistic`."""
        return cls(**{**obj, "layout": GateLayout.from_json(obj["layout"])})


class Router(nn.Module):
    """Architecture predictor plus N learnable architecture codes (the only trained parts of APTP)."""

    def __init__(self, config: RouterConfig, seed: int = 0):
        super().__init__()
        if config.n_codes < 1:
            raise ValueError(f"n_codes must be >= 1 (got {config.n_codes}); set prune.aptp.experts to the number of experts")
        self.config = config
        self.layout = config.layout
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.predictor = ArchitecturePredictor(config.layout, config.embed_dim)
        # Orthogonal rows of norm 1, as the authors' codebook: entries ~ 1/sqrt(dim), so every
        # code starts near logit 0, i.e. at the opening offset (all gates open).
        codes = torch.empty(config.n_codes, config.layout.dim)
        nn.init.orthogonal_(codes, generator=generator)
        self.codes = nn.Parameter(codes)
        self.register_buffer("weights", config.layout.group_weights(), persistent=False)

    # -- code space -----------------------------------------------------------------------
    def predict(self, prompt_embeddings: Tensor) -> Tensor:
        """(B, embed_dim) -> (B, dim): the predictor's code-space vector of each prompt."""
        return self.predictor(prompt_embeddings)

    def gate_logits(self, vectors: Tensor) -> Tensor:
        """Code-space vectors (B, dim) -> the gates' logits before noise, offset included: v + offset
        (`logistic`), or with the depth entries through the authors' cumulative softmax (`authors`)."""
        if self.config.gumbel == "logistic" or not self.layout.depth_units:
            return vectors + self.config.offset
        n = self.layout.depth_units
        depth = importance_logits(vectors[..., -n:], self.config.depth_order)
        return torch.cat([vectors[..., :-n], depth], dim=-1) + self.config.offset

    def arch_embedding(self, vectors: Tensor) -> Tensor:
        """Unit-norm architecture embedding of code-space vectors: group-weighted gate probabilities."""
        probs = torch.sigmoid(self.gate_logits(vectors) / self.config.temperature)
        return F.normalize(probs * self.weights, dim=-1)

    def similarity(self, prompt_embeddings: Tensor) -> Tensor:
        """(B, N) cosine between each prompt's predicted architecture and each code."""
        return self.arch_embedding(self.predict(prompt_embeddings)) @ self.arch_embedding(self.codes).T

    @torch.no_grad()
    def route(self, prompt_embeddings: Tensor) -> Tensor:
        """Inference routing: index (B,) of the nearest code (deterministic argmax)."""
        return self.similarity(prompt_embeddings).argmax(dim=-1)

    @torch.no_grad()
    def assign(self, prompt_embeddings: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
        """Training routing: Sinkhorn-balanced code index (B,) so that every expert gets prompts."""
        return balanced_assignment(self.similarity(prompt_embeddings), epsilon, iterations)

    # -- gates ------------------------------------------------------------------------------
    def decode(self, vectors: Tensor) -> dict[str, Tensor]:
        """Code-space vectors (B, dim) -> gate logits per group {name: (B, units)}."""
        return self.layout.split(self.gate_logits(vectors))

    def sample_masks(
        self, vectors: Tensor, generator: torch.Generator | None = None, noise_scale: float = 1.0
    ) -> dict[str, Tensor]:
        """Straight-through Gumbel-sigmoid masks {name: (B, units)} of code-space vectors (training)."""
        logits = self.gate_logits(vectors)
        if self.config.gumbel == "logistic":
            gates = gumbel_sigmoid(logits, self.config.temperature, hard=True, generator=generator, noise_scale=noise_scale)
            return self.layout.split(gates)
        soft = self.layout.split(gumbel_sigmoid(logits, self.config.temperature, hard=False, generator=generator,
                                                noise_scale=noise_scale, noise="authors"))
        width = {name for name, _ in self.layout.width}
        masks = {}
        for name, s in soft.items():
            s = keep_one_unit(s) if name in width else s
            masks[name] = straight_through((s >= 0.5).to(s.dtype), s)
        return masks

    @torch.no_grad()
    def code_masks(self, index: int) -> dict[str, Tensor]:
        """The deterministic hard masks {name: (units,)} of code `index`: its expert's architecture."""
        if not 0 <= index < self.config.n_codes:
            raise IndexError(f"code {index} does not exist; this router has {self.config.n_codes} codes")
        if self.config.gumbel == "authors":  # their inference gates: the noise of a fixed seed, 0
            masks = self.sample_masks(self.codes[index:index + 1], generator=torch.Generator().manual_seed(0))
            return {name: m[0].detach().clone() for name, m in masks.items()}
        hard = hard_gates(self.gate_logits(self.codes[index]))
        return {name: m.clone() for name, m in self.layout.split(hard).items()}


def save_router(router: Router, out_dir: str | Path) -> None:
    """Write router.safetensors (predictor and codes) and router_config.json into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in router.state_dict().items()}, out / "router.safetensors")
    (out / "router_config.json").write_text(json.dumps(router.config.to_json(), indent=2, sort_keys=True) + "\n")


def load_router(directory: str | Path) -> Router:
    """Rebuild a router written by `save_router`."""
    directory = Path(directory)
    for name in ("router.safetensors", "router_config.json"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory / name} is missing: expected a prune-aptp output directory")
    config = RouterConfig.from_json(json.loads((directory / "router_config.json").read_text()))
    router = Router(config)
    router.load_state_dict(load_file(directory / "router.safetensors"))
    return router.eval()
