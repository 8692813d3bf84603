"""The nursery validation's builder (monitor.training.nursery_soundscapes): rooms that are nurseries, and cries that
are held out, wideband and verified."""

import numpy as np
import soundfile as sf

from conftest import DATA
from monitor.offline.data import read_clips, split_groups
from monitor.training.nursery_soundscapes import SR, nursery_room, wideband_cries


def test_rooms_are_nurseries_and_reverberate_as_drawn():
    # imported here, not at collection: pyroomacoustics imports sounddevice, whose PortAudio would then start
    # before the capture tests' virtual microphone exists and never see it
    import pyroomacoustics as pra

    for seed in range(12):
        room = nursery_room(np.random.default_rng(seed))
        width, depth, height = room.size
        assert 6 <= width * depth <= 20 and 2.4 <= height <= 2.7 and 1 <= room.crib_to_mic_m <= 3
        assert 0.2 <= room.rt60 <= 0.6 and len(room.others) == 4
        # the simulated response decays as the drawn RT60 says (the image source model is cut at order 30, and
        # Sabine's formula is approximate: within a factor of 2)
        measured = pra.experimental.measure_rt60(room.crib, fs=SR, decay_db=30)
        assert room.rt60 / 2 <= measured <= room.rt60 * 2, (seed, room.rt60, measured)
        # the microphone hears the crib later than the direct path from 1 m away takes
        assert np.argmax(np.abs(room.crib)) >= SR * 1.0 / 343 - 2


def test_wideband_cries_are_held_out_16k_uploads_with_a_cleaned_twin():
    clips = read_clips(DATA)
    split = split_groups(clips)
    held_out, training = wideband_cries(clips), wideband_cries(clips, split="train")
    assert len(held_out) >= 15 and len(training) >= 100
    assert {split[c.group] for c in held_out} == {"val"} and {split[c.group] for c in training} == {"train"}
    assert all(sf.info(str(c.path)).samplerate == 16000 for c in held_out)
    cleaned = {"-".join(c.path.stem.split("-")[:6]).lower() for c in clips if c.source == "donateacry-cleaned"}
    assert all("-".join(c.path.stem.split("-")[:6]).lower() in cleaned for c in held_out)
