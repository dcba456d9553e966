"""Block features for feature distillation (L_featKD of Eq. 8): the output of every down block,
the mid block and every up block of a diffusers UNet2DConditionModel (9 for SD 2.1; 7 for a UNet
with 3 down and 3 up blocks), collected by forward hooks that are removed again on exit.

    with BlockFeatures(unet) as feats:
        out = unet(x_t, t, text).sample
        student_feats = feats.pop()        # [down_0, ..., down_n, mid, up_0, ..., up_n]
"""

from __future__ import annotations

from torch import Tensor, nn


def feature_blocks(unet: nn.Module) -> list[nn.Module]:
    """The blocks whose outputs feature KD compares, in forward order: down, mid, up."""
    return [*unet.down_blocks, unet.mid_block, *unet.up_blocks]


class BlockFeatures:
    """Context manager hooking `feature_blocks(unet)`; each forward appends one tensor per block.

    Down blocks return `(hidden_states, residuals)`: the hidden states are kept. The hooks
    store outputs only (no copies, gradients flow as usual) and the model is otherwise unchanged.
    """

    def __init__(self, unet: nn.Module):
        self.unet = unet
        self.features: list[Tensor] = []
        self._handles = []

    def _hook(self, module: nn.Module, args, output) -> None:
        self.features.append(output[0] if isinstance(output, tuple) else output)

    def __enter__(self) -> "BlockFeatures":
        self.features = []
        self._handles = [block.register_forward_hook(self._hook) for block in feature_blocks(self.unet)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.features = []

    def pop(self) -> list[Tensor]:
        """The features collected since the last `pop` (one forward: len(feature_blocks))."""
        feats, self.features = self.features, []
        return feats
