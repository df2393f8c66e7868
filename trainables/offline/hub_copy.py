"""Rows written as a local copy of a hub dataset repository, for tests of the hub code path.

``hf download --repo-type dataset ID --local-dir DIR`` copies a dataset repository's files:
a ``README.md`` dataset card whose metadata lists each config's data files by split, and the
data files themselves, as parquet shards (``<config>/<split>-00000-of-00001.parquet`` in
GLUE, SQuAD and most converted datasets). :func:`write_hub_copy` writes that layout, so
``datasets.load_dataset(DIR, config)`` reads it as it reads the repository on the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_hub_copy(out: str | Path, configs: dict[str, dict[str, Any]], *,
                   folders: dict[str, str] | None = None) -> Path:
    """Write ``configs`` (config name -> split name -> ``datasets.Dataset``) as a hub copy in
    ``out``; ``folders`` names a config's folder when it is not the config's name (``default``
    is usually ``data/``). Returns ``out``."""
    import yaml

    out = Path(out)
    folders = folders or {}
    card: list[dict[str, Any]] = []
    for config, splits in configs.items():
        folder = folders.get(config, config)
        files = []
        for split, ds in splits.items():
            path = out / folder / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(path))
            files.append({"split": split, "path": f"{folder}/{split}-*"})
        card.append({"config_name": config, "data_files": files})
    meta = yaml.safe_dump({"configs": card}, sort_keys=False)
    (out / "README.md").write_text(f"---\n{meta}---\n\n# A local copy of a hub dataset\n", encoding="utf-8")
    return out
