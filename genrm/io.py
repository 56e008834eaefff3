"""Writing outputs (layer 0): every file or directory is made under a temporary name
beside its destination and renamed onto it only when complete, so an interrupted
job never leaves an output that looks finished.

Files and directories are created with the modes the user's umask gives (0644 and
0755 under umask 022), so a group can read results on a shared cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for work in progress (``.<name>.<random>.partial``)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file, a link or a directory tree; nothing if there is none."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def replace_path(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move a complete file or directory ``src`` onto ``dst``, replacing what is there.

    A directory that is replaced is first renamed aside, so ``dst`` is at every
    moment either the old output or the new one, never a mixture.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.is_file():
        if src.is_dir():
            dst.unlink()  # os.replace does not put a directory in place of a file
    elif dst.is_dir():
        if src.is_dir():
            old = partial_name(dst)
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
            return
        shutil.rmtree(dst)
    os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    The caller creates the file at the yielded path (with ``directory=True`` the
    directory exists already and the caller fills it). On an exception the
    temporary file or directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        replace_path(tmp, path)
    finally:
        remove_path(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows as JSON lines atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))
