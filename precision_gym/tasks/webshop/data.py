"""The real WebShop files: names, checksums, lookup in a folder, JSON reading, schema check."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from precision_gym.error import CorruptDataError, DataNotFoundError

__all__ = [
    "FILE_NAMES",
    "HOW_TO_GET",
    "WEBSHOP_DATA_ENV",
    "WEBSHOP_FILES",
    "check_schema",
    "find_file",
    "read_json",
    "require_files",
    "verify_webshop_files",
]

#: environment variable naming the folder with the real WebShop files
WEBSHOP_DATA_ENV = "WEBSHOP_DATA"

#: file name -> (size in bytes, sha256) of the WebShop benchmark's small-catalogue files
WEBSHOP_FILES: dict[str, tuple[int, str]] = {
    "items_shuffle_1000.json": (
        4467013,
        "30a4765c3a327af72d9a9a95a6b2486d516f0fa1d3ecd83681901ce82a21b269",
    ),
    "items_ins_v2_1000.json": (
        147099,
        "f88a36314a397b53b3d9c3fa5878e5f7b26d35019a51ec83fbedeca61a948f6f",
    ),
    "items_human_ins.json": (
        5137548,
        "cf78667548a71786e1d9049c24b802e48e1084ad4bb021cae56ce1f6d96954a3",
    ),
}
# accepted names per file kind, first found wins (the full catalogue's names second)
FILE_NAMES = {
    "items_shuffle": ("items_shuffle_1000.json", "items_shuffle.json"),
    "items_ins": ("items_ins_v2_1000.json", "items_ins_v2.json"),
    "items_human_ins": ("items_human_ins.json",),
}
#: what to do when the files are missing or wrong (ends every data error)
HOW_TO_GET = (
    "Get the WebShop benchmark's small catalogue (its setup script's 'small' download: "
    "items_shuffle_1000.json, sha256 "
    f"{WEBSHOP_FILES['items_shuffle_1000.json'][1]}, and items_ins_v2_1000.json, sha256 "
    f"{WEBSHOP_FILES['items_ins_v2_1000.json'][1]}; items_human_ins.json, sha256 "
    f"{WEBSHOP_FILES['items_human_ins.json'][1]}, for human goals) and set "
    f"{WEBSHOP_DATA_ENV} to the folder holding them, or pass synthetic=True to use the "
    "built-in synthetic catalogue."
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_webshop_files(
    data_dir: str | Path, expected: dict[str, tuple[int, str]] | None = None
) -> dict[str, str]:
    """Check a user's WebShop files against the known sha256 sums.

    Returns file name -> ``"ok"``, ``"mismatch"`` or ``"missing"`` for each file of
    ``expected`` (default :data:`WEBSHOP_FILES`), and emits a :class:`UserWarning` per
    mismatch that states the expected and the actual digest. Never raises on a mismatch:
    a differently built catalogue may be intended.
    """
    table = WEBSHOP_FILES if expected is None else expected
    folder = Path(data_dir)
    status: dict[str, str] = {}
    for name, (_size, digest) in table.items():
        path = folder / name
        if not path.is_file():
            status[name] = "missing"
            continue
        actual = _sha256(path)
        if actual == digest:
            status[name] = "ok"
        else:
            status[name] = "mismatch"
            warnings.warn(
                f"WebShop file {path} has sha256 {actual}, expected {digest}: results may "
                "not be comparable with the benchmark's",
                UserWarning,
                stacklevel=2,
            )
    return status


def find_file(folder: Path, kind: str) -> Path | None:
    for name in FILE_NAMES[kind]:
        if (folder / name).is_file():
            return folder / name
    return None


def require_files(folder: Path, origin: str, human_goals: bool) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataNotFoundError(
            f"WebShop data folder {folder} (from {origin}) does not exist: expected a folder "
            f"with items_shuffle_1000.json and items_ins_v2_1000.json. {HOW_TO_GET}"
        )
    kinds = ["items_shuffle", "items_ins"] + (["items_human_ins"] if human_goals else [])
    found: dict[str, Path] = {}
    for kind in kinds:
        path = find_file(folder, kind)
        if path is None:
            names = " or ".join(FILE_NAMES[kind])
            size, digest = WEBSHOP_FILES[FILE_NAMES[kind][0]]
            raise DataNotFoundError(
                f"WebShop file {FILE_NAMES[kind][0]} is missing: looked for {names} in "
                f"{folder} (from {origin}); expected {FILE_NAMES[kind][0]} ({size} bytes, "
                f"sha256 {digest}). {HOW_TO_GET}"
            )
        found[kind] = path
    return found


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataNotFoundError(
            f"WebShop file {path} is not valid JSON ({exc}): expected the benchmark's "
            f"file. {HOW_TO_GET}"
        ) from exc


def check_schema(
    records: list[Any], ins: dict[str, Any], human: Any, files: dict[str, Path]
) -> None:
    """The benchmark's schema, checked before building: a clear error naming the file and
    the first offending record instead of an AttributeError deep inside."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "asin" not in rec:
            got = sorted(rec)[:6] if isinstance(rec, dict) else type(rec).__name__
            raise CorruptDataError(
                f"WebShop file {files['items_shuffle']} has the wrong schema: expected product "
                f"objects with an 'asin' (and 'name', 'pricing', ...), record {i} is {got}. "
                f"{HOW_TO_GET}"
            )
    for asin, entry in ins.items():
        if not isinstance(entry, dict):
            raise CorruptDataError(
                f"WebShop file {files['items_ins']} has the wrong schema: expected asin -> "
                f"object with 'attributes' / 'instruction', {asin!r} -> {type(entry).__name__}"
            )
    if human is not None and (
        not isinstance(human, dict) or not all(isinstance(v, list) for v in human.values())
    ):
        raise CorruptDataError(
            f"WebShop file {files['items_human_ins']} has the wrong schema: expected asin -> "
            f"list of goal objects, got {type(human).__name__}"
        )
