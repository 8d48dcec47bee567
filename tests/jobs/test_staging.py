"""All-or-nothing output folders (jobs/staging.py): every entry moved in, or none."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hybridsched.jobs import staging
from hybridsched.jobs.staging import OutputError, check_targets, staged_file, staged_output


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (None for a folder); the folder beside it
    is listed too, so a staging folder left behind shows."""
    files = {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }
    return {"files": files, "beside": sorted(os.listdir(folder.parent))}


@pytest.fixture
def out(tmp_path) -> Path:
    """An output folder from an earlier run: two files, a results folder, an unrelated file."""
    d = tmp_path / "run"
    (d / "results").mkdir(parents=True)
    (d / "a.csv").write_text("old a\n")
    (d / "b.json").write_text('{"old": true}\n')
    (d / "results" / "r.txt").write_text("old results\n")
    (d / "notes.txt").write_text("mine\n")
    return d


def test_commit_moves_every_entry_in_and_leaves_nothing_beside(out):
    """Tests that files replace files, a folder replaces a folder, other files stay, and no
    staging folder is left beside the output folder."""
    with staged_output(out, ["a.csv", "b.json"]) as stage:
        stage.path("a.csv").write_text("new a\n")
        stage.path("b.json").write_text("{}\n")
        stage.path("results").mkdir()
        (stage.path("results") / "s.txt").write_text("new results\n")
    assert (out / "a.csv").read_text() == "new a\n" and (out / "b.json").read_text() == "{}\n"
    assert sorted(p.name for p in (out / "results").iterdir()) == ["s.txt"]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(os.listdir(out.parent)) == ["run"]
    assert stage.committed == [out / "a.csv", out / "b.json", out / "results"]


def test_a_new_folder_is_created_only_when_the_run_commits(tmp_path):
    """Tests that the output folder and its missing parents appear only at the commit, and
    a failed run leaves neither."""
    out = tmp_path / "deep" / "er" / "run"
    with pytest.raises(RuntimeError, match="planted"), staged_output(out) as stage:
        stage.path("x.csv").write_text("x\n")
        raise RuntimeError("planted")
    assert os.listdir(tmp_path) == []
    with staged_output(out) as stage:
        stage.path("x.csv").write_text("x\n")
    assert (out / "x.csv").read_text() == "x\n"
    assert os.listdir(out.parent) == ["run"]


@pytest.mark.parametrize("raised", [RuntimeError("planted"), KeyboardInterrupt()])
def test_an_exception_in_the_block_leaves_the_folder_as_it_was(out, raised):
    """Tests that an error or Ctrl-C while the files are written moves nothing and removes
    the staging folder."""
    before = snapshot(out)
    with pytest.raises(type(raised)), staged_output(out) as stage:
        stage.path("a.csv").write_text("new a\n")
        raise raised
    assert snapshot(out) == before


@pytest.mark.parametrize("last", ["b.json", "results"])
def test_a_bad_target_is_refused_before_the_first_move(out, last):
    """Tests that a folder where a file goes (or a file where a folder goes) at the last
    entry is a one-line OutputError naming it, with nothing moved."""
    if last == "b.json":
        (out / "b.json").unlink()
        (out / "b.json").mkdir()
    else:
        (out / "results" / "r.txt").unlink()
        (out / "results").rmdir()
        (out / "results").write_text("a file\n")
    before = snapshot(out)
    with pytest.raises(OutputError) as info, staged_output(out) as stage:
        stage.path("a.csv").write_text("new a\n")
        if last == "b.json":
            stage.path("b.json").write_text("{}\n")
        else:
            stage.path("results").mkdir()
    assert str(out / last) in str(info.value) and "\n" not in str(info.value)
    assert snapshot(out) == before


def test_declared_names_are_checked_before_the_run(out):
    """Tests that ``names`` are checked on entering the block: the run does not start."""
    (out / "a.csv").unlink()
    (out / "a.csv").mkdir()
    ran = []
    with pytest.raises(OutputError, match="a.csv: is a folder"):
        with staged_output(out, ["a.csv"]):
            ran.append(True)
    assert ran == [] and sorted(os.listdir(out.parent)) == ["run"]


def test_a_move_that_fails_midway_is_undone(out, monkeypatch):
    """Tests that when the last move fails (after the checks passed), the moves before it
    are undone: every file and folder is back, byte for byte."""
    before = snapshot(out)
    real, failed = os.replace, []

    def replace(src, dst):  # the new results folder cannot be moved in (once)
        if Path(dst) == out / "results" and not failed:
            failed.append(src)
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(staging.os, "replace", replace)
    with pytest.raises(OutputError, match=r"results: cannot be written \(Input/output error\)"):
        with staged_output(out) as stage:
            stage.path("a.csv").write_text("new a\n")
            stage.path("b.json").write_text("{}\n")
            stage.path("results").mkdir()
            stage.path("new.txt").write_text("new\n")
    monkeypatch.undo()
    assert snapshot(out) == before


def test_a_full_disk_while_writing_names_the_target(out):
    """Tests that an OSError from writing a staged file is a one-line OutputError naming the
    target in the output folder, not the staging path."""
    before = snapshot(out)
    with pytest.raises(OutputError) as info, staged_output(out) as stage:
        path = stage.path("a.csv")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    assert str(info.value).startswith(f"{out / 'a.csv'}: cannot be written (No space left")
    assert snapshot(out) == before


def test_remove_deletes_an_entry_in_the_same_commit(out):
    """Tests that ``remove`` deletes a stale entry of the output folder with the commit."""
    with staged_output(out) as stage:
        stage.path("a.csv").write_text("new a\n")
        stage.remove("results")
        stage.remove("absent")
    assert not (out / "results").exists() and (out / "a.csv").read_text() == "new a\n"


def test_staged_file_replaces_one_file_or_nothing(tmp_path):
    """Tests that ``staged_file`` replaces the file when the block succeeds, keeps the old
    one when it fails, and leaves no temporary file in its folder."""
    target = tmp_path / "profile.yaml"
    target.write_text("old\n")
    with pytest.raises(OutputError, match="profile.yaml: cannot be written"):
        with staged_file(target) as path:
            path.write_text("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["profile.yaml"]
    with staged_file(target) as path:
        path.write_text("new\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["profile.yaml"]


def test_check_targets_refuses_a_file_as_the_folder(tmp_path):
    """Tests that an output folder that is a file is refused, naming it."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_targets(tmp_path / "f", ["a.csv"])
    with pytest.raises(ValueError, match="plain file name"):
        with staged_output(tmp_path / "run") as stage:
            stage.path("../escape.csv")
