"""The layout is the data flow: the pure core imports numpy (and the config's YAML parser) and nothing else."""

import json
import pkgutil
import subprocess
import sys

import monitor.core
from conftest import ROOT
from daemon_helpers import without_torch

CORE = sorted(f"monitor.core.{m.name}" for m in pkgutil.iter_modules(monitor.core.__path__))


def test_the_core_imports_only_numpy_and_yaml_with_torch_unimportable(tmp_path):
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {CORE!r}]; "
            "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=without_torch(tmp_path), check=True)
    loaded = set(json.loads(out.stdout)) - set(sys.stdlib_module_names) - {"monitor", "__main__"}
    packages = {m for m in loaded if not m.startswith("_") and m != "cython_runtime"}  # numpy's and pip's helpers
    assert packages == {"numpy", "yaml"}, packages
    assert len(CORE) >= 8  # buffer, control, events, health, levels, pipeline, schedule, stats
