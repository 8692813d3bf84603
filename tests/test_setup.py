"""The wheel works outside the checkout: built from this tree, installed with its ``edge`` extra into a fresh
virtualenv without torch (as ``pipx install 'crymonitor[edge]'`` would), it replays a held-out cry and runs the
daemon with the built-in defaults, from a folder that is not the checkout, on the ONNX models it carries.

It downloads the edge dependencies through pip's configured registry (and pip's cache); it is skipped, saying
so, only when that registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from monitor.config import Config


pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]  # one build at a time in the checkout


MAX_WHEEL_BYTES = 40 * 1024 * 1024


def _pip(python: Path | str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=timeout, env=_clean_env())


def _clean_env(**extra: str) -> dict:
    """The environment without the test run's PYTHONPATH (which points at the checkout) or virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


def _source_copy(folder: Path) -> Path:
    """What the wheel is built from, copied out of the checkout: pip builds in the source tree (its ``build/``), so
    a build in the checkout itself collides with any other build of it running at the same time, and leaves files
    there. The models folder holds only what the wheel may carry: the manifest and the ONNX exports."""
    import shutil

    shutil.copytree(ROOT / "monitor", folder / "monitor", ignore=shutil.ignore_patterns("__pycache__", "_models"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    (folder / "models").mkdir()
    for model in [ROOT / "models" / "manifest.json", *(ROOT / "models").glob("*.onnx")]:
        shutil.copy(model, folder / "models" / model.name)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the built wheel, the bin folder of a fresh virtualenv it is installed in with ``[edge]``)."""
    work = tmp_path_factory.mktemp("wheel")
    probe = _pip(sys.executable, "download", "--no-deps", "--quiet", "--dest", str(work / "probe"),
                 "onnxruntime>=1.17", timeout=300)
    if probe.returncode:
        pytest.skip("no package registry reachable (pip download onnxruntime failed: "
                    f"{probe.stderr.strip().splitlines()[-1:]}); the wheel test needs one")
    built = _pip(sys.executable, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(work / "dist"),
                 str(_source_copy(work / "src")))
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("crymonitor-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, env=_clean_env())
    bin_dir = work / "venv" / "bin"
    done = _pip(bin_dir / "python", "install", "--quiet", f"{wheel}[edge]")
    assert done.returncode == 0, done.stderr
    return wheel, bin_dir


def test_the_wheel_carries_the_default_onnx_models_and_no_pt_within_40_mb(installed):
    wheel, _ = installed
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size / 2**20:.1f} MB"
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".pt")]
    defaults = Config()
    models = {n.removeprefix("monitor/_models/") for n in names if n.startswith("monitor/_models/")}
    assert models == {"manifest.json", defaults.detector.model.name, defaults.classifier.model.name}
    assert not [n for n in names if n.startswith(("tests/", "tools/", "models/"))]


def test_the_installed_wheel_has_no_torch_and_uses_the_models_it_carries(installed, tmp_path):
    _, bin_dir = installed
    torch = subprocess.run([bin_dir / "python", "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                           capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), check=True)
    assert torch.stdout.strip() == "None"  # the edge extra does not pull torch in
    check = subprocess.run([bin_dir / "crymonitor", "check-config"], capture_output=True, text=True, cwd=tmp_path,
                           env=_clean_env(), timeout=60)
    assert check.returncode == 0, check.stderr
    settings = json.loads(check.stdout.split("\n", 1)[1])
    site = (bin_dir.parent / "lib").resolve()
    for section in ("detector", "classifier"):
        model = Path(settings[section]["model"])
        assert model.is_file() and model.is_relative_to(site) and model.parent.name == "_models", model


def test_the_installed_wheel_replays_a_held_out_cry_outside_the_checkout(installed, cry_then_quiet, tmp_path):
    _, bin_dir = installed
    out = subprocess.run([bin_dir / "crymonitor", "replay", str(cry_then_quiet), "--log-format", "json"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env=_clean_env(XDG_STATE_HOME=str(tmp_path / "state")))
    assert out.returncode == 0, out.stderr
    kinds = [json.loads(line)["type"] for line in out.stdout.splitlines()]
    assert kinds[0] == "cry_start" and "cry_reason" in kinds and kinds[-1] == "cry_end", kinds


def test_the_installed_wheel_runs_the_daemon_with_the_default_config(installed, cry_then_quiet, broker,
                                                                     subscriber_factory, tmp_path):
    """``crymonitor run`` with no config file: the built-in defaults, only the broker's port pointed at the test
    broker, and a file paced in real time instead of a microphone; the cry arrives over MQTT."""
    _, bin_dir = installed
    sub = subscriber_factory(broker.port, "crymonitor/nursery/#")
    done = subprocess.run([bin_dir / "crymonitor", "run", "--input", str(cry_then_quiet), "--mqtt-port",
                           str(broker.port), "--log-format", "json"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=180, env=_clean_env(XDG_STATE_HOME=str(tmp_path / "state")))
    assert done.returncode == 0, done.stderr[-3000:]
    messages = sub.wait_for(lambda m: any(t.endswith("/event") and '"cry_end"' in p for t, p, _ in m), timeout=30)
    kinds = [json.loads(p)["type"] for t, p, _ in messages if t.endswith("/event")]
    assert kinds[0] == "cry_start" and kinds[-1] == "cry_end", kinds
