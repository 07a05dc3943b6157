"""Make this checkout's Snakemake profiles usable by name: `snakemake --profile slurm`, `--profile local-gpus`.

Snakemake looks a profile name up in the working directory and in its configuration folders (`snakemake --help`,
--profile; on Linux ~/.config/snakemake), where profiles for a compute environment belong (Snakemake's
documentation: global profiles). Each profile is linked there, not copied, so this repository stays its only
source and a `git pull` updates it. A profile of the same name that is not a link to a vitwork checkout (your own)
is left alone, with a note. Run with the Python that runs Snakemake:  .venv/bin/python profiles/install.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from snakemake.common import get_appdirs  # where Snakemake itself looks for profiles by name

PROFILES = ("slurm", "local-gpus")


def is_vitwork_profile(path: Path) -> bool:
    """A link to a profile folder of some vitwork checkout (this one or another clone)."""
    return path.is_symlink() and (path.resolve().parent / "install.py").is_file() and path.resolve().parent.name == "profiles"


def install(config_dir: Path, here: Path) -> list[str]:
    """Link every profile of `here` into `config_dir`; return one line per profile saying what was done."""
    config_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in PROFILES:
        link, target = config_dir / name, here / name
        if link.exists() or link.is_symlink():
            if link.exists() and not is_vitwork_profile(link):  # (a dangling link is replaced)
                lines.append(f"kept your own profile {link}; for vitwork's, use --profile {target}")
                continue
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
        lines.append(f"snakemake --profile {name}: {link} -> {target}")
    return lines


if __name__ == "__main__":
    for line in install(Path(get_appdirs().user_config_dir), Path(__file__).resolve().parent):
        print(line, file=sys.stderr)
