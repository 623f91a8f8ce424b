"""Finding and loading profiles: the shipped ones, a user's folder of YAML files, or single paths.

Profiles are named by their `name` field. A user folder is searched after the shipped profiles,
so a user file with a shipped name replaces that profile (a site can correct a figure without
editing the package). A request is either a name or a path to a .yaml file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from spikeport.hwprofiles.schema import Profile, parse_profile

from spikeport.errors import UserError
from spikeport.readers import load_yaml

BUILTIN_DIR = Path(__file__).parent / "profiles"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: ~10x faster on these files
    """Reads 1e-3 as a float, as YAML 1.2 does (PyYAML's YAML 1.1 makes it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate one profile file."""
    data = load_yaml(path, _Loader)
    return parse_profile(data, path)


def available_profiles(user_dirs: list[str | os.PathLike] = ()) -> dict[str, Profile]:
    """All profiles by name: the shipped ones, then each user folder (later ones win)."""
    profiles: dict[str, Profile] = {}
    for folder in [BUILTIN_DIR, *map(Path, user_dirs)]:
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder of profiles")
        for path in sorted(folder.glob("*.yaml")):
            profile = load_profile(path)
            profiles[profile.name] = profile
    return profiles


def resolve_profiles(requests: list[str], user_dirs: list[str | os.PathLike] = ()) -> list[Profile]:
    """The profiles a user asked for, by name or path; no request means every available profile."""
    known = available_profiles(user_dirs)
    if not requests:
        return list(known.values())
    chosen = []
    for request in requests:
        if request.endswith((".yaml", ".yml")) or os.sep in request:
            chosen.append(load_profile(request))
        elif request in known:
            chosen.append(known[request])
        else:
            raise UserError(f"unknown profile '{request}' (available: {', '.join(sorted(known))})")
    return chosen
