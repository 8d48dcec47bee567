"""Output folders written all or nothing: ``staged_output(out_dir)``.

Every file of a run is written into a staging folder beside ``out_dir`` (on the same
filesystem) and moved into ``out_dir`` only once the whole run has succeeded::

    with staged_output("out/run", ["trace.csv", "metrics.json"]) as stage:
        write_trace(trace, stage.path("trace.csv"))
        stage.path("metrics.json").write_text(text)

Leaving the block without an exception commits: every target is checked before the
first move (``out_dir`` a file or not writable, a folder where a file goes, a file where
a folder goes: ``OutputError``, a ``ValueError`` whose one-line message names the path;
nothing is moved), then each entry is moved in with ``os.replace``. A move that fails
after all undoes the moves before it. On any exception, ``KeyboardInterrupt`` included,
the staging folder is removed and ``out_dir`` stays as it was (folders created for the
run are removed too). Only a process killed outright (SIGKILL, power loss) leaves a
staging folder behind, named ``.NAME.staging-*``.

Entries are top-level names of ``out_dir``: files, or folders that replace the folder
of the same name as a whole. ``stage.remove(name)`` deletes an entry of ``out_dir`` in
the same commit. ``names``, when given, are checked on entering the block too (a run
that cannot be saved fails before it starts) and must all be written.
``staged_file(path)`` is the one-file form (``export``, ``calibrate``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class OutputError(ValueError):
    """A target that cannot be written; the message is one line naming its path."""


def _is_folder(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def check_targets(out_dir: str | os.PathLike, files: Iterable[str] = (), folders=()) -> None:
    """Raise ``OutputError`` unless ``files`` and ``folders`` can be moved into ``out_dir``."""
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; nothing written")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: is not writable; nothing written")
    for name in files:
        if _is_folder(out / name):
            raise OutputError(f"{out / name}: is a folder, not a file; nothing written to {out}")
    for name in folders:
        t = out / name
        if os.path.lexists(t) and not _is_folder(t):
            raise OutputError(f"{t}: is a file, not a folder; nothing written to {out}")


def _check_name(name: str) -> str:
    if name in ("", ".", "..") or any(s and s in name for s in ("/", os.sep, os.altsep)):
        raise ValueError(f"an output name must be a plain file name, got {name!r}")
    return name


class Stage:
    """A staging folder for ``out_dir`` (module docstring); ``path(name)`` is where an entry
    is written, ``commit()`` moves every entry in, ``close()`` removes what is left."""

    def __init__(self, out_dir: str | os.PathLike, names=None, inside: bool = False):
        self.out = Path(out_dir).expanduser().absolute()
        self.names = None if names is None else [_check_name(n) for n in names]
        if self.names is not None:
            check_targets(self.out, self.names)
        self._made: list[Path] = []  # folders created for this run, outermost first
        self._order: list[str] = []  # entries in the order their paths were asked for
        self._removals: list[str] = []
        self.committed: list[Path] | None = None
        self._old: Path | None = None  # what the commit replaced, until it is over
        self.dir = self._make_dir(inside)

    def _make_dir(self, inside: bool) -> Path:
        """The staging folder: beside ``out`` (in ``out`` when ``inside``, when ``out`` is a
        mount point, or when only ``out`` is writable), on ``out``'s filesystem."""
        missing, p = [], self.out if inside else self.out.parent
        while not os.path.lexists(p) and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            for d in reversed(missing):
                d.mkdir()
                self._made.append(d)
            parent = self.out.parent
            if not inside and self.out.is_dir():
                inside = os.stat(self.out).st_dev != os.stat(parent).st_dev
            if not inside:
                try:
                    return Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=parent))
                except PermissionError:
                    if not self.out.is_dir():
                        raise
            return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out))
        except BaseException as e:  # Ctrl-C included: the folders made here go again
            self._unmake()
            if isinstance(e, OSError):
                raise OutputError(f"{self.out}: cannot be written ({e.strerror or e})") from None
            raise

    def path(self, name: str) -> Path:
        """Where entry ``name`` is written (a file, or a folder the caller creates)."""
        if _check_name(name) not in self._order:
            self._order.append(name)
        return self.dir / name

    def remove(self, name: str) -> None:
        """Delete ``out_dir / name`` (a file or a folder, if present) in the commit."""
        self._removals.append(_check_name(name))

    def write_error(self, e: OSError, name: str | None = None) -> OutputError | None:
        """``e``, raised while writing entry ``name`` (default: the entry its file name is
        in), as a one-line ``OutputError`` naming the target; None if not a write here."""
        if name is None and e.filename is not None:
            with contextlib.suppress(ValueError):
                name = Path(os.fsdecode(e.filename)).absolute().relative_to(self.dir).parts[0]
        if name is None:
            return None
        why = e.strerror or str(e)
        return OutputError(
            f"{self.out / name}: cannot be written ({why}); nothing written to {self.out}"
        )

    def commit(self) -> list[Path]:
        """Check every target, then move every entry into ``out_dir``; the paths moved in."""
        present = set(os.listdir(self.dir))
        missing = [n for n in self.names or () if n not in present]
        if missing:
            raise RuntimeError(f"staged output: {', '.join(missing)} not written")
        names = [n for n in [*(self.names or ()), *self._order] if n in present]
        names = list(dict.fromkeys([*names, *sorted(present)]))
        folders = [n for n in names if _is_folder(self.dir / n)]
        check_targets(self.out, [n for n in names if n not in folders], folders)
        removals = [n for n in self._removals if n not in present]
        if not names and not any(os.path.lexists(self.out / n) for n in removals):
            self.committed = []
            return []
        done: list[tuple[str, str]] = []
        where = self.out
        try:
            self._old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.dir.parent))
            if not self.out.is_dir():
                self.out.mkdir()
                self._made.append(self.out)
            for n in names:
                where = self.out / n
                self._move_in(n, done)
            for n in removals:
                where = self.out / n
                if os.path.lexists(where):
                    os.replace(where, self._old / n)
                    done.append(("aside", n))
        except BaseException as e:
            self._undo(done)
            if isinstance(e, OSError):
                why = e.strerror or str(e)
                raise OutputError(
                    f"{where}: cannot be written ({why}); nothing written to {self.out}"
                ) from None
            raise
        self.committed = [self.out / n for n in names]
        return self.committed

    def _move_in(self, n: str, done: list) -> None:
        """Move entry ``n`` into place, keeping what it replaces aside (a hard link for
        a file, so the target is never missing) until the commit is over."""
        target, old = self.out / n, self._old / n
        if os.path.lexists(target):
            try:
                if _is_folder(target):
                    raise OSError("a folder is moved, not linked")
                os.link(target, old, follow_symlinks=False)
                done.append(("linked", n))
            except OSError:
                os.replace(target, old)
                done.append(("aside", n))
        os.replace(self.dir / n, target)
        done.append(("in", n))

    def _undo(self, done: list) -> None:
        """Put back what the moves in ``done`` changed, last first (best effort)."""
        old = self._old
        for what, n in reversed(done):
            if what == "in":
                with contextlib.suppress(OSError):
                    os.replace(self.out / n, self.dir / n)
            if os.path.lexists(old / n):
                with contextlib.suppress(OSError):
                    os.replace(old / n, self.out / n)

    def _unmake(self) -> None:
        for d in reversed(self._made):
            with contextlib.suppress(OSError):
                d.rmdir()
        self._made = []

    def close(self) -> None:
        """Remove the staging folder, and the folders made for a run that did not commit."""
        for d in (self.dir, self._old):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        if self.committed is None:
            self._unmake()


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike, names=None) -> Iterator[Stage]:
    """A ``Stage`` for ``out_dir``, committed when the block succeeds (module docstring)."""
    stage = Stage(out_dir, names)
    try:
        try:
            yield stage
        except OSError as e:  # a file of the stage could not be written (a full disk)
            err = stage.write_error(e)
            if err is None:
                raise
            raise err from None
        stage.commit()
    finally:
        stage.close()


@contextlib.contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[Path]:
    """Where to write the file ``path``: it replaces ``path`` when the block succeeds."""
    p = Path(path).expanduser().absolute()
    stage = Stage(p.parent, [p.name], inside=True)
    try:
        try:
            yield stage.path(p.name)
        except OSError as e:  # the file could not be written (a full disk)
            raise stage.write_error(e, p.name) from None
        stage.commit()
    finally:
        stage.close()
