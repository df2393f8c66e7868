"""The project's caches under one root (``$LORASWEEP_CACHE``, else ``$XDG_CACHE_HOME/lorasweep``
or ``~/.cache/lorasweep``): what each holds, its size, and removing them.

    lorasweep cache list                      each cache: entries, size, what it holds
    lorasweep cache clear                     remove every cache (prints what it removed)
    lorasweep cache clear data memo           only these
    lorasweep cache clear --dry-run           what would be removed

Everything here is rebuilt on demand (its directories are named by the hash of what they
were built from), so clearing costs only the time to rebuild. Clear no cache while a sweep
that reads it runs. Files beside the caches that lorasweep did not write (the root may be a
folder of the user's) are listed and never removed. The Hugging Face Hub's own cache (downloaded models and datasets) is not
lorasweep's: ``hf cache`` lists and prunes it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from trainables.errors import UserError, did_you_mean, one_of

#: The caches under the root, each a directory of build-once entries.
CACHES = {
    "data": "tokenised datasets (one per task, data, tokenizer and preprocessing settings)",
    "smoke": "offline smoke assets: tiny models, locally trained tokenizers, synthetic data",
    "memo": "memoised checks (tokenizer digests, model module trees)",
    "hub-copies": "local copies of hub datasets (--data DIR) as `datasets` built them, one per content",
    "adapters": "adapters downloaded from MLflow for warm starts (adapter.init_from=runs:/...)",
    "mlflow": "an empty MLflow SQLite store per MLflow version, copied for each new store",
}


def size_of(path: Path) -> int:
    """Bytes in the files under ``path`` (links not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())


def human(n: int) -> str:
    """A size in binary units: ``512 B``, ``2.9 KiB``, ``45.2 MiB``."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def caches(root: Path) -> dict[str, list[Path]]:
    """Each cache's entries; anything else under the root is listed as ``other`` (never
    lorasweep's: every cache lives in its own folder)."""
    found: dict[str, list[Path]] = {name: sorted((root / name).iterdir()) if (root / name).is_dir() else []
                                    for name in CACHES}
    found["other"] = sorted(p for p in root.iterdir() if p.name not in CACHES) if root.is_dir() else []
    return found


def list_caches(root: Path) -> None:
    print(f"lorasweep caches in {root} ($LORASWEEP_CACHE moves them)")
    total = 0
    for name, entries in caches(root).items():
        size = sum(size_of(p) for p in entries)
        total += size
        what = CACHES.get(name, "not lorasweep's: never removed")
        if name in CACHES or entries:
            print(f"  {name:<11}{len(entries):>5} entries {human(size):>11}  {what}")
    print(f"  {'total':<11}{'':>5}         {human(total):>11}")


def clear_caches(root: Path, names: Sequence[str], *, dry_run: bool) -> None:
    """Remove the named caches (all of them when none is named); what is not a cache stays."""
    for name in names:
        if name not in CACHES:
            raise UserError("cache", f"unknown cache {name!r}{did_you_mean(name, CACHES)}; accepted: {one_of(CACHES)}")
    verb = "would remove" if dry_run else "removed"
    freed = 0
    found = caches(root)
    others = found.pop("other")
    for name, entries in found.items():
        if names and name not in names or not entries:
            continue
        size = sum(size_of(p) for p in entries)
        freed += size
        if not dry_run:
            for p in entries:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        print(f"{verb} {name}: {len(entries)} entries, {human(size)} ({root / name})")
    if others:
        print(f"kept {len(others)} entries in {root} that are no lorasweep cache (never removed)")
    print(f"{verb} {human(freed)} in all" if freed else "nothing to remove")


def main(argv: Sequence[str] | None = None) -> int:
    from trainables.paths import check_cache_dir

    from sweeps.cli import _Parser

    parser = _Parser(prog="lorasweep cache", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{list,clear}")
    sub.add_parser("list", help="each cache, its entries and size")
    clear = sub.add_parser("clear", help="remove caches (all, or those named)")
    clear.add_argument("names", nargs="*", metavar="NAME", help=f"caches to remove: {', '.join(CACHES)}")
    clear.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    args = parser.parse_args(argv)
    try:
        root = check_cache_dir(create=False)
        if args.action == "list":
            list_caches(root)
        else:
            clear_caches(root, args.names, dry_run=args.dry_run)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
