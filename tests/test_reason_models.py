"""Cry-reason architectures (issue 4): shapes, pinned parameter and MAC counts, registry, ablations, MFCC front end.

The pinned numbers come from ../shared/docs/models.md (§1.3 IETMA, §2.3 PANNs, §4 ECAPA-TDNN), which measured the
published reference definitions.
"""

from __future__ import annotations

import doctest
import functools

import pytest
import torch
import torchaudio
from torch import nn

import monitor.inference.models.cnn14
import monitor.inference.models.ecapa
import monitor.inference.models.ietma
import monitor.inference.models.mfcc
import monitor.inference.models.resnet
from monitor.core.baby import metadata_vector
from monitor.inference.models import REGISTRY, build, count_macs, count_params
from monitor.inference.models.cnn10 import ConvBlock
from monitor.inference.models.cnn14 import Cnn14
from monitor.inference.models.ecapa import EcapaTdnn, additive_angular_margin
from monitor.inference.models.ietma import (
    CodedMca,
    CodedRse,
    DifferentialAttention,
    DilatedMca,
    Ietma,
    InteractiveRse,
)
from monitor.inference.models.logmel import LogMel
from monitor.inference.models.mfcc import Mfcc, dct_matrix
from monitor.inference.models.multitask import MultiTaskCnn14
from monitor.inference.models.reason import ReasonNet
from monitor.inference.models.resnet import ResNet18
from monitor.inference.models.tbdm import TbdmNet, TemporalAwareBlock

# name → (input layout, shortest input length it accepts or that we promise)
REASON_MODELS = {
    "ietma": ("mfcc", 3),
    "ietma-paper": ("mfcc", 3),
    "ietma-no-mca": ("mfcc", 3),
    "ietma-no-rse": ("mfcc", 3),
    "ietma-no-diffattn": ("mfcc", 3),
    "ecapa": ("mfcc", 5),
    "resnet18": ("mfcc", 8),
    "cnn14-stat": ("logmel", 32),
    "cnn14-mha": ("logmel", 32),
    "tbdm": ("mfcc", 1),
    "cnn14-mha-multitask": ("logmel", 32),
}

# Exact parameter counts, 6 classes (13 MFCC for the MFCC models, 64 mels for CNN14).
PARAMS = {
    "ietma": 1_498_674,  # models.md §1.3: the authors' model minus the dead attn(256) and fc1
    "ietma-paper": 1_498_674 + 4 * (20_623 - 2_048) - 3 * (336_704 - 303_680),  # 4 RSEs grow, 3 MCAs shrink
    "ietma-no-mca": 1_498_674 - 3 * (336_704 - 24_640),  # MCA → Conv1d(128→64, k3)
    "ietma-no-rse": 1_498_674 - 4 * 2_048,  # four SE16s (3 blocks + the global skip) gone
    "ietma-no-diffattn": 1_498_674 - 65_632 - 256,  # the attention and its BN gone
    "ecapa": 721_840 - 1_152 + 1_158,  # SpeechBrain C=128 with cosine head (W 6×192), head swapped for Linear
    "resnet18": 11_689_512 - 6_272 - 513_000 + 3_078,  # torchvision resnet18, 1-channel stem, 6-way head
    "cnn14-stat": 80_753_615 - 4_196_352 - 1_079_823 + 8_390_656 + 12_294,  # PANNs K=527; fc1 4096→2048; 6-way
    "cnn14-mha": 80_753_615 - 4_196_352 - 1_079_823 + (2_048 + 8) + 4_196_352 + 12_294,  # + 8-head scorer
    # 6 TABs per stream at C_i = 13·2^i (two bias-free k2 convs + two BNs each), 1×1 squeezes + BN, fusion, head
    "tbdm": sum(2 * (4 * c * c + 4 * c) + 2 * c * 13 + 2 * 13 for c in (13, 26, 52, 104, 208, 416)) + 6 + 13 * 6 + 6,
    # cnn14-mha without its head; ARI projections ([mean; max] of stages 1–5 → 128) and weights; two auxiliary
    # hidden layers (640 → 64) and heads (2, 5); co-attention query and gate; the head reads 640 + 2·64
    "cnn14-mha-multitask": 80_753_615 - 4_196_352 - 1_079_823 + (2_048 + 8) + 4_196_352
    + sum(2 * c * 128 + 128 for c in (64, 128, 256, 512, 1024)) + 5 * 128
    + 2 * (2_176 * 64 + 64) + (64 * 2 + 2) + (64 * 5 + 5) + (2_176 * 64 + 64) + (64 * 2_176 + 2_176) + 2_304 * 6 + 6,
}


def features(name: str, batch: int, frames: int) -> torch.Tensor:
    layout, _ = REASON_MODELS[name]
    return torch.randn(batch, 13, frames) if layout == "mfcc" else torch.randn(batch, frames, 64)


@functools.cache
def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build(name).eval()


@pytest.mark.parametrize("name", REASON_MODELS)
def test_shapes_at_256_frames_and_at_the_shortest_input(name):
    with torch.no_grad():
        for frames in (256, REASON_MODELS[name][1]):
            logits = model(name)(features(name, 2, frames))
            assert logits.shape == (2, 6) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", REASON_MODELS)
def test_parameter_counts_are_pinned(name):
    assert count_params(model(name)) == PARAMS[name]


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


def test_macs_of_the_baselines_match_the_measured_references():
    # PANNs Cnn14 body at 101 frames is 1.974 G with fc1 2048→2048 and the 527-way head (models.md §2.3).
    cnn14 = count_macs(model("cnn14-stat"), features("cnn14-stat", 1, 101))
    assert round((cnn14 - 2_048 * 2_048 - 2_048 * 6 + 2_048 * 527) / 1e9, 3) == 1.974
    # SpeechBrain ECAPA C=128: thop 0.112 G at 235 frames; thop also counts BatchNorms (≈ 1.5 %).
    assert count_macs(model("ecapa"), features("ecapa", 1, 235)) == pytest.approx(0.112e9, rel=0.03)


def test_ecapa_matches_speechbrain_sizes_with_the_cosine_head():
    # models.md §4: 0.72 M (C=128, 13 MFCC), 6.02 M (C=512, 13 MFCC), 0.85 M (C=144), all with a 6-class cosine head.
    assert count_params(EcapaTdnn(head="cosine")) == 721_840
    assert count_params(EcapaTdnn(head="cosine")) == pytest.approx(0.72e6, rel=0.01)
    assert count_params(EcapaTdnn(channels=512, head="cosine")) == pytest.approx(6.02e6, rel=0.005)
    assert count_params(EcapaTdnn(channels=144, head="cosine")) == pytest.approx(0.85e6, rel=0.005)
    cosines = EcapaTdnn(head="cosine").eval()(torch.randn(2, 13, 50))
    assert cosines.abs().max() <= 1.0 + 1e-6


def test_additive_angular_margin():
    cosine = torch.tensor([[0.6, 0.1, -0.3], [-0.99, 0.5, 0.2]])
    logits = additive_angular_margin(cosine, torch.tensor([0, 0]), margin=0.2, scale=30.0)
    theta = torch.acos(torch.tensor(0.6))
    assert logits[0, 0] == pytest.approx(30 * float(torch.cos(theta + 0.2)), abs=1e-4)
    assert torch.allclose(logits[:, 1:], 30 * cosine[:, 1:])  # non-target classes keep their cosine
    # cos θ = −0.99 ≤ cos(π − 0.2): θ + m would pass π, so SpeechBrain's linear fallback applies
    assert logits[1, 0] == pytest.approx(30 * (-0.99 - 0.2 * float(torch.sin(torch.tensor(torch.pi - 0.2)))), abs=1e-4)


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


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
@pytest.mark.parametrize("name", REASON_MODELS)
def test_every_model_trains_one_step(name):
    torch.manual_seed(3)
    m = build(name, num_classes=5).train()
    loss = nn.functional.cross_entropy(m(features(name, 2, REASON_MODELS[name][1] * 2)), torch.tensor([0, 4]))
    loss.backward()
    assert torch.isfinite(loss)


def test_tbdm_at_the_papers_39_mfcc_has_the_papers_parameter_count():
    assert count_params(TbdmNet(num_classes=6, in_channels=39)) == 16_821_336  # models.md §3.2: 16.82 M effective
    net = TbdmNet()
    assert [b.gate[1].dilation[0] for b in net.forward_blocks] == [1, 2, 4, 8, 16, 32]
    assert [b.gate[1].in_channels for b in net.backward_blocks] == [13, 26, 52, 104, 208, 416]


def test_tbdm_keeps_the_length_and_reads_both_directions():
    block = TemporalAwareBlock(13, 4).eval()
    assert block(torch.randn(2, 13, 9)).shape == (2, 26, 9)  # 'same' padding, width doubles
    net = TbdmNet().eval()
    x = torch.randn(1, 13, 40)
    with torch.no_grad():  # the backward stream reads the reversed input, so reversing the input changes the output
        assert not torch.allclose(net(x), net(x.flip(-1)))


def test_multitask_predicts_the_auxiliary_tasks_and_names_what_stage_two_freezes():
    net = build("cnn14-mha-multitask", num_classes=5, widths=(16, 32, 64, 128, 256, 512)).eval()
    reason, sex, age = net.all_logits(torch.randn(3, 64, 64))
    assert (reason.shape, sex.shape, age.shape) == ((3, 5), (3, 2), (3, 5))
    assert net.embed(torch.randn(3, 64, 64)).shape == (3, 512 + 128 + 2 * 64)
    assert net.lowest_layers() == [net.bn0, net.blocks[0], net.blocks[1]]


def test_metadata_changes_the_prehoc_model_and_unknown_is_zeros():
    torch.manual_seed(0)
    net = ReasonNet("tbdm", metadata=True).eval()
    x = torch.randn(1, 120, 64)
    with torch.no_grad():
        told, _ = net.classify(x, torch.from_numpy(metadata_vector("f", "2-6m"))[None])
        unknown, embedding = net.classify(x)
        assert not torch.allclose(told, unknown)
    assert embedding.shape == (1, 13 + 16) and net.backbone.head.in_features == 13 + 16
    with pytest.raises(ValueError, match="no linear head"):
        ReasonNet("ietma", metadata=True)


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_registry_round_trip():
    expected = {"ietma": Ietma, "ecapa": EcapaTdnn, "resnet18": ResNet18, "cnn14-stat": Cnn14, "cnn14-mha": Cnn14,
                "tbdm": TbdmNet, "cnn14-mha-multitask": MultiTaskCnn14}
    for name in REASON_MODELS:
        assert name in REGISTRY
        assert isinstance(model(name), expected.get(name, Ietma))
        copy = build(name).eval()
        copy.load_state_dict(model(name).state_dict())
        x = features(name, 2, 64)
        with torch.no_grad():
            assert torch.equal(copy(x), model(name)(x))
    assert model("cnn14-mha").pool.n_heads == 8 and not hasattr(model("cnn14-stat").pool, "n_heads")
    assert "cnn10" in REGISTRY
    for bad in (lambda: Ietma(variant="ppr"), lambda: EcapaTdnn(head="aam"), lambda: Cnn14(pooling="max")):
        with pytest.raises(ValueError, match="unknown"):
            bad()


def test_cnn14_reuses_cnn10s_conv_block():
    blocks = model("cnn14-stat").blocks
    assert len(blocks) == 6 and all(isinstance(b, ConvBlock) for b in blocks)
    assert [b.conv2.out_channels for b in blocks] == [64, 128, 256, 512, 1024, 2048]


def test_mfcc_is_the_ortho_dct_of_the_shared_logmel():
    reference = torchaudio.functional.create_dct(13, 64, "ortho")  # (64 mels, 13 coefficients)
    assert torch.allclose(dct_matrix(13, 64), reference, atol=1e-6)
    mfcc = Mfcc()
    assert count_params(mfcc) == 0
    waveform = torch.randn(2, 16000)
    logmel = LogMel()(waveform)
    out = mfcc(waveform)
    assert out.shape == (2, 13, 101)
    assert torch.allclose(out, (logmel @ reference).transpose(1, 2), atol=1e-3)
    assert torch.equal(mfcc.from_logmel(logmel), out)  # the detector's log-mel can be reused as is


def test_mfcc_global_normalisation_from_training_statistics():
    torch.manual_seed(4)
    mfcc = Mfcc()
    train = mfcc(torch.randn(4, 16000) * torch.tensor([[0.01], [0.1], [0.3], [1.0]]))
    mfcc.set_statistics(train.mean(dim=(0, 2)), train.var(dim=(0, 2), unbiased=False))
    normalised = mfcc(torch.randn(4, 16000) * torch.tensor([[0.01], [0.1], [0.3], [1.0]]))
    assert normalised.mean(dim=(0, 2)).abs().max() < 0.5
    state = mfcc.state_dict()
    assert {"mean", "std"} <= state.keys()
    restored = Mfcc()
    restored.load_state_dict(state)
    assert torch.equal(restored.from_logmel(torch.zeros(1, 5, 64)), mfcc.from_logmel(torch.zeros(1, 5, 64)))


@pytest.mark.parametrize(
    "module",
    [monitor.inference.models.ietma, monitor.inference.models.ecapa, monitor.inference.models.resnet, monitor.inference.models.cnn14, monitor.inference.models.mfcc,
     monitor.inference.models.tbdm, monitor.inference.models.multitask, monitor.inference.models.reason],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
