"""MFCC from the shared log-mel (monitor/inference/models/mfcc.py)."""

from __future__ import annotations

import torch
import torchaudio

from monitor.inference.models import count_params
from monitor.inference.models.logmel import LogMel
from monitor.inference.models.mfcc import Mfcc, dct_matrix


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
