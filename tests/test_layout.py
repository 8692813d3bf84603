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


def monitor_imports(module: str) -> set[str]:
    """The ``monitor`` modules ``module`` imports itself (its own import statements, at any depth of the file)."""
    import ast
    import importlib.util

    tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("monitor"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("monitor")}
    return found


def test_the_config_is_the_schema_and_imports_only_the_leaf_controls():
    # config <- core (presets, pipeline) <- inference: the schema sits below everything that reads it, so no
    # circle runs through it (core/control, whose parsing validates quiet_hours, imports nothing of ours; the
    # manifest is read, inside a function, to say file:line when a model path names the wrong kind of model)
    assert monitor_imports("monitor.config") <= {"monitor.core.control", "monitor.inference.weights"}
    assert monitor_imports("monitor.core.control") == set()


def test_the_manifest_module_imports_no_runtime():
    # runtime.open_model picks a runtime; both runtimes read the manifest; the manifest knows neither
    assert not monitor_imports("monitor.inference.weights") & {"monitor.inference.onnx_runtime",
                                                                "monitor.inference.torch_runtime",
                                                                "monitor.inference.runtime"}
