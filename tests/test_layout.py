"""The layout is the data flow: the pure core imports numpy (and the config's YAML parser) and nothing else."""

import ast
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


# Who may import whom, by package: the run-time parts below never reach up into those above them. The driver and
# the log set-up sit at the package's top, between the parts they join (core, audio, inference) and the two
# programs on them: the daemon (service/) and the offline tools (offline/), which never import each other.
BELOW = {
    "monitor.core": ("monitor.audio", "monitor.inference", "monitor.driver", "monitor.logs", "monitor.offline",
                     "monitor.service", "monitor.training", "monitor.cli"),
    "monitor.driver": ("monitor.offline", "monitor.service", "monitor.training", "monitor.cli"),
    "monitor.logs": ("monitor.offline", "monitor.service", "monitor.training", "monitor.cli"),
    "monitor.offline": ("monitor.service", "monitor.training", "monitor.cli"),
}


def imports_in(path) -> set[str]:
    """Every ``monitor`` module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("monitor.")}


def test_no_part_imports_one_above_it_offline_never_reaches_into_service():
    broken = []
    for path in sorted((ROOT / "monitor").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for part, above in BELOW.items():
            if module == part or module.startswith(part + "."):
                broken += [f"{module} imports {name}" for name in sorted(imports_in(path))
                           if any(name == a or name.startswith(a + ".") for a in above)]
    assert not broken, broken
    assert imports_in(ROOT / "monitor" / "offline" / "replay.py") >= {"monitor.driver"}  # the rule sees imports


def test_replay_and_evaluate_load_nothing_of_the_daemon():
    code = ("import sys, monitor.offline.replay, monitor.offline.evaluate_cli; "
            "print(sorted(m for m in sys.modules if m.startswith('monitor.service')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
