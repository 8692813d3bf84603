"""Shipped model files: a state dict plus an entry in ``models/manifest.json`` (architecture, kwargs, sha256 and,
for a detector, its calibrated ``operating_point`` per sensitivity preset; for a reason model, which per-baby
``adaptation`` runs by default and its count prior's fitted ``answer_prior``).

Weights are loaded with ``torch.load(weights_only=True)`` only after the file's sha256 matches the manifest,
so a truncated, tampered or swapped file is refused with a clear error instead of silently scoring garbage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from monitor.config import ADAPTATIONS, MODELS_DIR  # noqa: F401  MODELS_DIR: where the tools find the models
from monitor.core.presets import OperatingPoint
MANIFEST = "manifest.json"


class ModelFileError(Exception):
    """A model file that is missing, unlisted, corrupt or does not match its recorded hash."""


@dataclass(frozen=True)
class ModelEntry:
    file: str
    arch: str
    kwargs: dict
    sha256: str
    # A detector's calibrated sensitivity presets ("low", "medium", "high"), written by
    # tools/sweep_operating_point.py for exactly this file: a retrained model starts without any.
    operating_point: dict[str, OperatingPoint] = field(default_factory=dict)
    hop_seconds: float | None = None  # the hop those presets were calibrated at (N of M counts windows)
    # A reason model's per-baby learner by default (monitor.config.ADAPTATIONS), decided by its study
    # (tools/reason_table.py); None: not studied. An older entry's true / false read as prototypes / off
    adaptation: str | None = None
    # Its count prior's fitted a, b and floor (monitor.core.adaptation.AnswerPrior); None: not fitted
    answer_prior: dict[str, float] | None = None
    # A detector's "not a cry" rules and whether they are on by default, from its study (tools/not_a_cry_study.py):
    # {"max_distance", "never_above", "announce_after_s", "on_by_default"}; None: not studied
    not_a_cry: dict | None = None
    # Whose window embeddings this file's equal (the first 12 hex digits of that file's sha256), when an exact
    # rewrite (tools/export_onnx.py: span form) replaced the file the home's "not a cry" marks were made with;
    # None: its own
    embedding_space: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(models_dir: Path) -> dict[str, ModelEntry]:
    path = models_dir / MANIFEST
    try:
        raw = json.loads(path.read_text())
        return {name: ModelEntry(file=name, arch=e["arch"], kwargs=e.get("kwargs", {}), sha256=e["sha256"],
                                 operating_point={k: _operating_point(p)
                                                  for k, p in e.get("operating_point", {}).items()},
                                 hop_seconds=None if e.get("hop_seconds") is None else float(e["hop_seconds"]),
                                 adaptation=_adaptation(e.get("adaptation")),
                                 answer_prior=_answer_prior(e.get("answer_prior")),
                                 not_a_cry=_not_a_cry(e.get("not_a_cry")),
                                 embedding_space=None if e.get("embedding_space") is None
                                 else str(e["embedding_space"]))
                for name, e in raw.items()}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model manifest missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ModelFileError(f"{path}: malformed model manifest ({exc!r})") from None


def _not_a_cry(raw: dict | None) -> dict | None:
    if raw is None:
        return None
    return {"max_distance": float(raw["max_distance"]), "never_above": float(raw["never_above"]),
            "announce_after_s": float(raw["announce_after_s"]), "on_by_default": bool(raw["on_by_default"])}


def _adaptation(raw: object) -> str | None:
    if raw is None or raw in ADAPTATIONS:
        return raw
    if isinstance(raw, bool):  # written before there was more than one learner
        return "prototypes" if raw else "off"
    raise ValueError(f"adaptation {raw!r} is none of {', '.join(ADAPTATIONS)}")


def _answer_prior(raw: dict | None) -> dict[str, float] | None:
    if raw is None:
        return None
    prior = {k: float(raw[k]) for k in ("a", "b", "floor")}
    if not (prior["a"] >= 0 and prior["b"] >= 0 and 0 < prior["floor"] <= 1) or any(map(math.isinf, prior.values())):
        raise ValueError(f"answer_prior {prior} outside a >= 0, b >= 0, 0 < floor <= 1")
    return prior


def _operating_point(raw: dict) -> OperatingPoint:
    return OperatingPoint(float(raw["start_threshold"]), int(raw["confirm_windows"]), int(raw["of_windows"]))


def write_manifest_entry(models_dir: Path, name: str, arch: str, kwargs: dict) -> str:
    """Record ``models_dir/name`` in the manifest with its current sha256; returns the hash."""
    path = models_dir / MANIFEST
    entries = json.loads(path.read_text()) if path.exists() else {}
    digest = sha256_of(models_dir / name)
    entries[name] = {"arch": arch, "kwargs": kwargs, "sha256": digest}
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return digest


def _record_in_entry(models_dir: Path, name: str, what: str, fields: dict) -> None:
    """Set ``fields`` in ``name``'s manifest entry: a measurement of exactly that file, so its hash must still
    match (``what`` names the measurement in the error)."""
    path = models_dir / MANIFEST
    entries = json.loads(path.read_text())
    if sha256_of(models_dir / name) != entries[name]["sha256"]:
        raise ModelFileError(f"{models_dir / name}: changed since its manifest entry; not {what} it")
    entries[name].update(fields)
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def write_operating_point(models_dir: Path, name: str, presets: dict[str, OperatingPoint],
                          hop_seconds: float) -> None:
    """Record a detector's presets, calibrated at ``hop_seconds``, in its manifest entry."""
    _record_in_entry(models_dir, name, "calibrating", {
        "operating_point": {k: dataclasses.asdict(p) for k, p in presets.items()}, "hop_seconds": hop_seconds})


def write_adaptation(models_dir: Path, name: str, default: str, answer_prior: dict[str, float] | None = None) -> None:
    """Record the reason model ``name``'s default per-baby learner and (if given) its count prior's fitted values,
    in its entry and in those of its current exports (the same model: their entries copy its decisions when made)."""
    if default not in ADAPTATIONS:
        raise ValueError(f"adaptation {default!r} is none of {', '.join(ADAPTATIONS)}")
    fields = {"adaptation": default}
    if answer_prior is not None:
        fields["answer_prior"] = {k: float(answer_prior[k]) for k in ("a", "b", "floor")}
    _record_in_entry(models_dir, name, "recording an adaptation verdict for", fields)
    source = sha256_of(models_dir / name)
    for export, entry in read_manifest(models_dir).items():
        if entry.kwargs.get("exported_from") == name and entry.kwargs.get("source_sha256") == source:
            _record_in_entry(models_dir, export, "recording an adaptation verdict for", fields)


def write_not_a_cry(models_dir: Path, name: str, rules: dict, on_by_default: bool) -> None:
    """Record a detector's "not a cry" rules (:class:`monitor.core.home_sounds.HoldRules` fields) and verdict."""
    _record_in_entry(models_dir, name, "recording not-a-cry rules for",
                     {"not_a_cry": {**rules, "on_by_default": on_by_default}})


def verified_entry(path: Path, maker: str) -> ModelEntry:
    """``path``'s manifest entry, once the file exists, is listed and matches its recorded sha256 (``maker``: what
    to run when it is missing); every failure is a one-line :class:`ModelFileError`."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model file missing ({maker})")
    entry = read_manifest(path.parent).get(path.name)
    if entry is None:
        raise ModelFileError(f"{path}: not listed in {path.parent / MANIFEST}")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ModelFileError(f"{path}: sha256 {actual[:16]}… does not match the manifest's {entry.sha256[:16]}…; "
                             "refusing to load a modified or corrupt model")
    return entry


def load_model(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, ModelEntry]:
    """Build the listed architecture and load ``path`` into it, in eval mode, after the sha256 check (torch is
    imported here, not with the module: the ONNX runtime reads the manifest without it)."""
    import torch

    from monitor.inference.models import build

    path = Path(path)
    entry = verified_entry(path, "the model card names the tool that makes it")
    model = build(entry.arch, **entry.kwargs)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # torch raises many types for a bad pickle or mismatched keys
        raise ModelFileError(f"{path}: cannot load weights ({exc})") from None
    return model.to(device).eval(), entry
