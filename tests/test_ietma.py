"""IETMA (monitor/inference/models/ietma.py): its parts and sizes pinned to ../shared/docs/models.md §1, and its
ablations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_helpers import features, model
from monitor.inference.models import count_macs, count_params
from monitor.inference.models.ietma import CodedMca, CodedRse, DifferentialAttention, DilatedMca, Ietma, InteractiveRse


def test_ietma_parameter_breakdown_matches_the_reference():
    m = model("ietma")
    assert count_params(m.blocks[0]) == 473_664
    assert count_params(m.blocks[0].res2) == 361_792 and count_params(m.blocks[0].res2.mca) == 336_704
    assert count_params(m.attention) == 65_632 and count_params(m.stem) == 8_448 and count_params(m.fc) == 774
    # thop only sees modules that run: the λ vectors (4 × 16) and the RMSNorm weight (32) are raw Parameters of
    # the attention, so thop reports 1,498,578 = 1.429 × 2^20, the paper's "1.43 MB".
    raw = sum(p.numel() for n, p in m.attention.named_parameters() if n.startswith("lambda") or n.startswith("norm"))
    assert count_params(m) - raw == 1_498_578


def thop_ietma(macs: int, frames: int) -> int:
    """Our conv + linear MACs plus what thop adds for IETMA: 4 ops per element of every affine BatchNorm over time
    (stem 128 + 3 × (128 + 64 + 128 + 128) channels), T + 1 ops per output of the AdaptiveAvgPool1d modules the
    authors' code uses (1 + 3 × 2 SEs on 128 channels, 3 MCA SEs on 512, the global pool on 128), and 4 per
    element of the three BatchNorms on pooled vectors (128 + 128 + 6)."""
    return macs + 4 * 1_472 * frames + 2_560 * (frames + 1) + 4 * 262


def test_ietma_macs_match_the_paper_at_234_frames():
    m = model("ietma")
    macs = count_macs(m, features("ietma", 1, 234))
    assert macs == 318_567_936  # conv + linear only
    assert macs == pytest.approx(0.3205e9, rel=0.01)  # the paper's 0.32 G (thop 0.3205 G, models.md §1.3)
    assert round(thop_ietma(macs, 234) / 1e9, 4) == 0.3205  # …and exactly thop's figure with its extra rules
    macs_256 = count_macs(m, features("ietma", 1, 256))
    assert macs_256 == macs + 22 * 1_360_000  # 1.36 M conv MACs per frame (stem 8,320 + 3 blocks × 450,560)
    assert round(thop_ietma(macs_256, 256) / 1e9, 3) == 0.351  # the debug seq_len=256 figure


def test_ablations_remove_exactly_their_part():
    def kinds(m: nn.Module) -> set[type]:
        return {type(sub) for sub in m.modules()}

    full = model("ietma")
    parts = {CodedMca, CodedRse, DifferentialAttention}
    assert parts <= kinds(full)
    ablations = {"ietma-no-mca": CodedMca, "ietma-no-rse": CodedRse, "ietma-no-diffattn": DifferentialAttention}
    for name, removed in ablations.items():
        ablated = model(name)
        assert kinds(ablated) & parts == parts - {removed}  # that part gone, the other two intact
        assert count_params(ablated) < count_params(full)
        assert count_macs(ablated, features(name, 1, 64)) <= count_macs(full, features(name, 1, 64))
    # without MCA the slot holds one plain k3 conv 128 → 64; without RSE the slots are identities
    for block in model("ietma-no-mca").blocks:
        assert type(block.res2.mca) is nn.Conv1d and block.res2.mca.kernel_size == (3,)
        assert (block.res2.mca.in_channels, block.res2.mca.out_channels) == (128, 64)
    no_rse = model("ietma-no-rse")
    assert isinstance(no_rse.skip_rse, nn.Identity) and all(isinstance(b.rse, nn.Identity) for b in no_rse.blocks)

    paper = model("ietma-paper")
    assert {InteractiveRse, DilatedMca} <= kinds(paper) and not {CodedRse, CodedMca} & kinds(paper)
    # the flags compose with the paper variant too
    assert InteractiveRse not in kinds(Ietma(variant="paper", use_rse=False))
    assert DilatedMca not in kinds(Ietma(variant="paper", use_mca=False))


def test_rse_and_interactive_rse():
    torch.manual_seed(1)
    x = torch.randn(2, 128, 40)
    coded = CodedRse(128)
    assert torch.allclose(coded(x), 2 * x + coded.se(x))
    paper = InteractiveRse(128)
    nn.init.zeros_(paper.mix.weight), nn.init.zeros_(paper.mix.bias)
    assert torch.equal(paper(x), x)  # a residual around the 1×1 conv
    assert paper.temporal_conv.in_channels == 2 and paper.temporal_conv.kernel_size == (7,)


def test_coded_mca_keeps_the_padding_layout():
    mca = CodedMca(128, 64)
    assert mca(torch.randn(1, 128, 3)).shape == (1, 64, 3)  # T ≥ 3 is the minimum (max-pool k3 unpadded)
    with pytest.raises(RuntimeError):
        mca(torch.randn(1, 128, 2))
    assert mca.pre3.padding == (1,) and mca.conv3.padding == (0,)
    assert mca.conv5.dilation == (2,) and mca.conv5.padding == (3,) and mca.conv7.dilation == (1,)
    assert DilatedMca(128, 64)(torch.randn(1, 128, 3)).shape == (1, 64, 3)


def test_differential_attention_on_one_token_is_a_gated_projection():
    torch.manual_seed(2)
    attention = DifferentialAttention(128, n_heads=4, depth=9)
    assert attention.lambda_init == pytest.approx(0.7597, abs=1e-4)
    g = torch.randn(8, 1, 128)
    y = attention(g)
    # models.md §1.4 closed form: both softmax maps are 1, so (A1 − λA2)V = (1 − λ)V
    v = attention.v_proj(g).view(8, 1, 4, 32)
    inner = attention.norm((1 - attention.lam()) * v) * (1 - attention.lambda_init)
    closed = g * torch.sigmoid(attention.out_proj(inner.reshape(8, 1, 128)))
    assert torch.allclose(y, closed, atol=1e-6)
    y.sum().backward()
    assert attention.q_proj.weight.grad.abs().max() == 0 and attention.k_proj.weight.grad.abs().max() == 0
    assert attention.v_proj.weight.grad.abs().max() > 0
