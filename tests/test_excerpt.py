"""``tools/excerpt.py``: an excerpt of an annotated recording keeps the annotations it overlaps."""

import numpy as np
import soundfile as sf

from monitor.offline.evaluation import Annotation, read_annotations


def test_an_excerpt_keeps_the_annotations_it_overlaps_clipped_and_shifted(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    audio = np.arange(10 * 16000, dtype=np.float32) / (10 * 16000)
    sf.write(tmp_path / "scene.wav", audio, 16000, subtype="FLOAT")
    (tmp_path / "scene.csv").write_text("onset_s,offset_s,label\n1.0,2.0,cry\n2.5,4.5,music\n5.0,9.0,cry\n9.5,10,x\n")
    out = tmp_path / "cut" / "part.wav"
    subprocess.run([sys.executable, ROOT / "tools" / "excerpt.py", tmp_path / "scene.wav", "3", "7", out],
                   check=True, capture_output=True)
    assert read_annotations(out.with_suffix(".csv")) == [Annotation(0.0, 1.5, "music"), Annotation(2.0, 4.0, "cry")]
    cut, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and np.array_equal(cut, audio[3 * 16000:7 * 16000])
