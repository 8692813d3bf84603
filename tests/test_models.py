"""The model registry and size counters (monitor/inference/models/__init__.py) over every architecture: shapes,
pinned parameter and MAC counts, one training step, a state-dict round trip, the docstring examples. The pinned
numbers come from ../shared/docs/models.md (§1.3 IETMA, §2.3 PANNs, §4 ECAPA-TDNN)."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import monitor.inference.models.cnn14
import monitor.inference.models.ecapa
import monitor.inference.models.ietma
import monitor.inference.models.mfcc
import monitor.inference.models.resnet
from model_helpers import REASON_MODELS, features, model
from monitor.inference.models import REGISTRY, build, count_macs, count_params
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.models.cnn14 import Cnn14
from monitor.inference.models.ecapa import EcapaTdnn
from monitor.inference.models.ietma import Ietma
from monitor.inference.models.multitask import MultiTaskCnn14
from monitor.inference.models.resnet import ResNet18
from monitor.inference.models.streaming_cnn10 import StreamingCnn10
from monitor.inference.models.tbdm import TbdmNet


def test_registry_builds_by_name_and_rejects_unknown():
    assert isinstance(build("cnn10"), Cnn10)
    assert type(build("cnn10-stream")) is StreamingCnn10
    assert "cnn10" in REGISTRY
    with pytest.raises(ValueError, match="unknown model architecture 'cnn100'"):
        build("cnn100")


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


@pytest.mark.parametrize("name", REASON_MODELS)
def test_shapes_at_256_frames_and_at_the_shortest_input(name):
    with torch.no_grad():
        for frames in (256, REASON_MODELS[name][1]):
            logits = model(name)(features(name, 2, frames))
            assert logits.shape == (2, 6) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", REASON_MODELS)
def test_parameter_counts_are_pinned(name):
    assert count_params(model(name)) == PARAMS[name]


def test_macs_of_the_baselines_match_the_measured_references():
    # PANNs Cnn14 body at 101 frames is 1.974 G with fc1 2048→2048 and the 527-way head (models.md §2.3).
    cnn14 = count_macs(model("cnn14-stat"), features("cnn14-stat", 1, 101))
    assert round((cnn14 - 2_048 * 2_048 - 2_048 * 6 + 2_048 * 527) / 1e9, 3) == 1.974
    # SpeechBrain ECAPA C=128: thop 0.112 G at 235 frames; thop also counts BatchNorms (≈ 1.5 %).
    assert count_macs(model("ecapa"), features("ecapa", 1, 235)) == pytest.approx(0.112e9, rel=0.03)


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
@pytest.mark.parametrize("name", REASON_MODELS)
def test_every_model_trains_one_step(name):
    torch.manual_seed(3)
    m = build(name, num_classes=5).train()
    loss = nn.functional.cross_entropy(m(features(name, 2, REASON_MODELS[name][1] * 2)), torch.tensor([0, 4]))
    loss.backward()
    assert torch.isfinite(loss)


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


@pytest.mark.parametrize(
    "module",
    [monitor.inference.models.ietma, monitor.inference.models.ecapa, monitor.inference.models.resnet, monitor.inference.models.cnn14, monitor.inference.models.mfcc,
     monitor.inference.models.tbdm, monitor.inference.models.multitask, monitor.inference.models.reason],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
