"""Reading the tasks' data files: every problem becomes a ``ValueError`` naming the file (and line).

Shared by the toy-world and Hub loaders (:mod:`toy`, :mod:`hub`). The loaders return one ``test``
split of normalised rows ``{prompt, reference, category, label, answer}`` (:func:`_row`), so every
task YAML reads the same column names whatever the source.

lm-eval imports the files of this folder by their *path* (``!function <file>.<name>`` in a YAML);
they reach each other through the installed package (``safety_tradeoff.lm_eval_tasks.<file>``).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets

log = logging.getLogger("lm_eval.tasks.safety_tradeoff")


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file, strictly decoded."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found" + (" (it is a directory)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = _read_json_rows(path)
    elif suffix == ".csv":
        text = _decode(path, path.read_bytes())
        rows = list(csv.DictReader(io.StringIO(text)))
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        except Exception as err:  # noqa: BLE001 - any pyarrow failure is a bad file here
            raise ValueError(f"{path}: not a readable parquet file ({err})") from None
    else:
        raise ValueError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                         "use .jsonl, .json, .csv or .parquet")
    if not rows:
        raise ValueError(f"{path}: the file has no rows (empty file)")
    return rows


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[err.start]:02x}); "
                         "save the file as UTF-8") from None


def _read_json_rows(path: Path) -> list[dict]:
    text = _decode(path, path.read_bytes())
    if text.lstrip().startswith("["):  # a JSON array of objects
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        rows = data
    else:  # JSON Lines
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {lineno} is not valid JSON ({err.msg})") from None
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {i} is a {type(row).__name__}, expected a JSON object")
    return rows


def _column(rows: list[dict], path: Any, name: str, *, required: bool = True) -> list[Any]:
    """One column as a list; a missing column or non-string value is a ValueError naming both."""
    values = []
    for i, row in enumerate(rows, 1):
        if name not in row or row[name] is None:
            if not required:
                values.append("")
                continue
            raise ValueError(f"{path}: row {i} has no {name!r} column (columns: {', '.join(map(str, row)) or 'none'})")
        values.append(row[name])
    return values


def _text_column(rows: list[dict], path: Any, name: str, *, required: bool = True) -> list[str]:
    values = _column(rows, path, name, required=required)
    for i, v in enumerate(values, 1):
        if not isinstance(v, str):
            raise ValueError(f"{path}: row {i}: column {name!r} must be text, got {type(v).__name__}")
    return values


def _prompt_column(rows: list[dict], path: Any, name: str) -> list[str]:
    values = _text_column(rows, path, name)
    for i, v in enumerate(values, 1):
        if not v.strip():
            raise ValueError(f"{path}: row {i}: column {name!r} is empty")
    return values


def _user_path(value: Any) -> Path:
    """A path given by the user: ``~`` expanded; a relative path is taken from the current directory
    (like any command-line path) and made absolute once, so later directory changes do not matter."""
    return Path(os.fspath(value)).expanduser().resolve()


def _dataset(rows: list[dict]) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _row(prompt: str, reference: str = "", category: str = "", label: str = "", answer: str = "") -> dict:
    return {"prompt": prompt, "reference": reference, "category": category, "label": label, "answer": answer}


@lru_cache(maxsize=64)
def _log_once(message: str) -> None:
    log.info(message)
