"""Outputs: written whole or not at all, with the modes the user's umask gives."""

from __future__ import annotations

import os
import stat

import pytest

from genrm.io import atomic_path, replace_path, write_json, write_text


@pytest.fixture
def umask():
    """Set a umask for one test and restore the old one."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                       (0o002, 0o664, 0o775)])
def test_files_and_directories_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_json(tmp_path / "a" / "scores.json", {"score": 1})
    assert mode(tmp_path / "a" / "scores.json") == file_mode
    with atomic_path(tmp_path / "model", directory=True) as tmp:
        (tmp / "config.json").write_text("{}")
    assert mode(tmp_path / "model") == dir_mode and mode(tmp_path / "model" / "config.json") == file_mode


def test_a_failed_write_leaves_the_old_output_and_no_partial_file(tmp_path):
    write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_directory_replaces_a_directory_a_file_or_a_link(tmp_path):
    for old in ("dir", "file", "link"):
        dst = tmp_path / old
        if old == "dir":
            dst.mkdir()
            (dst / "stale").write_text("x")
        elif old == "file":
            dst.write_text("x")
        else:
            (tmp_path / "target").mkdir(exist_ok=True)
            dst.symlink_to(tmp_path / "target")
        with atomic_path(dst, directory=True) as tmp:
            (tmp / "new").write_text("y")
        assert dst.is_dir() and not dst.is_symlink() and sorted(p.name for p in dst.iterdir()) == ["new"]
    assert (tmp_path / "target").is_dir()  # a replaced link leaves its target alone


def test_replace_path_moves_a_file_over_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("z")
    replace_path(tmp_path / "f", tmp_path / "d")
    assert (tmp_path / "d").read_text() == "z" and not (tmp_path / "f").exists()


def test_a_step_ended_by_sigterm_leaves_no_partial_output(tmp_path):
    """Slurm ends a job at its time limit (and scancel ends it) with SIGTERM: the command line
    turns it into an exit that runs the cleanup, so the temporary output is removed."""
    import signal
    import subprocess
    import sys

    code = ("import signal, time\nfrom genrm import cli\nfrom genrm.io import atomic_path\n"
            "signal.signal(signal.SIGTERM, cli._exit_on_sigterm)\n"
            f"with atomic_path({str(tmp_path / 'out.jsonl')!r}) as tmp:\n"
            "    tmp.write_text('half')\n    print('writing', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
