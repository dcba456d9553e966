"""Feature hooks collect exactly the down/mid/up block outputs and leave the UNet unchanged."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from pruneforget.train.features import BlockFeatures, feature_blocks


def small_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 2, 2), norm_num_groups=4, cross_attention_dim=12, use_linear_projection=True,
    ).eval()


def manual_block_outputs(unet, x, t, text):
    """Re-run UNet2DConditionModel's forward by hand, block by block (no hooks)."""
    emb = unet.time_embedding(unet.time_proj(t.expand(x.shape[0])).to(x.dtype))
    h = unet.conv_in(x)
    residuals, outs = (h,), []
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=text)
        else:
            h, res = block(hidden_states=h, temb=emb)
        residuals += res
        outs.append(h)
    h = unet.mid_block(h, emb, encoder_hidden_states=text)
    outs.append(h)
    for block in unet.up_blocks:
        res, residuals = residuals[-len(block.resnets):], residuals[: -len(block.resnets)]
        kwargs = {"encoder_hidden_states": text} if getattr(block, "has_cross_attention", False) else {}
        h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=residuals[-1].shape[2:] if residuals else None, **kwargs)
        outs.append(h)
    return outs


def test_hooks_collect_every_down_mid_and_up_block_output():
    unet = small_unet()
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor(500), torch.randn(2, 5, 12)
    with torch.no_grad(), BlockFeatures(unet) as feats:
        unet(x, t, text)
        got = feats.pop()
        assert feats.pop() == []  # pop empties
        unet(x, t, text)
        assert len(feats.pop()) == 7  # one feature per block per forward
    assert len(got) == len(feature_blocks(unet)) == 3 + 1 + 3
    with torch.no_grad():
        expected = manual_block_outputs(unet, x, t, text)
    assert [tuple(f.shape) for f in got] == [(2, 8, 4, 4), (2, 16, 2, 2), (2, 16, 2, 2), (2, 16, 2, 2),
                                             (2, 16, 4, 4), (2, 16, 8, 8), (2, 8, 8, 8)]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_hooks_are_removed_and_model_unchanged_after_exit():
    unet = small_unet()
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor(300), torch.randn(2, 5, 12)
    before_state = {k: v.clone() for k, v in unet.state_dict().items()}
    with torch.no_grad():
        before = unet(x, t, text).sample
        with BlockFeatures(unet) as feats:
            inside = unet(x, t, text).sample
            assert len(feats.pop()) == 7
        after = unet(x, t, text).sample
    torch.testing.assert_close(inside, before, rtol=0, atol=0)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert all(not m._forward_hooks for m in unet.modules())
    assert all(torch.equal(v, before_state[k]) for k, v in unet.state_dict().items())


def test_features_carry_gradients_to_the_student():
    unet = small_unet()
    x, t, text = torch.randn(1, 4, 8, 8), torch.tensor(100), torch.randn(1, 5, 12)
    with BlockFeatures(unet) as feats:
        unet(x, t, text)
        loss = sum(f.pow(2).mean() for f in feats.pop())
    loss.backward()
    assert unet.conv_in.weight.grad is not None and unet.conv_in.weight.grad.abs().sum() > 0
