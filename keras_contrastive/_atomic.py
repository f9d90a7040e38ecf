"""Writes that a kill at any moment cannot leave half-done: write aside, fsync, rename.

Used by the backups of `kc.callbacks.BackupAndRestore`, by `kc.export` and by
`EmbeddingIndex.save`; it imports nothing from the package, so every layer may use it.

A new file or directory is written to a temporary sibling (`.NAME.tmp-<8 hex digits>`,
same directory, so same filesystem), flushed to disk with `fsync`, and renamed
into place. Renaming a file over a file is atomic (`os.replace`). Renaming a
directory over a non-empty directory is not possible on POSIX, so a directory
is replaced in two renames: `path -> .NAME.old-<8 hex digits>`, then the new one to
`path`, then the old one is deleted. Between the two renames (two system calls)
`path` is missing; if the process dies right there, the complete old directory
is left as `.NAME.old-*`, and `recover` (run at the start of every write to
`path`) renames it back. Only one process may write a given `path` at a time.

Paths with a scheme (`gs://`, `s3://`, `ram://`: TensorFlow filesystems) have no
atomic rename to build on; they are written in place, as TensorFlow does.
"""

import contextlib
import os
import shutil
import uuid

TMP = ".tmp-"
OLD = ".old-"


def _sibling(path, kind):
    parent, name = os.path.split(path)
    return os.path.join(parent, f".{name}{kind}{uuid.uuid4().hex[:8]}")


def _siblings(path, kind):
    parent, name = os.path.split(path)
    prefix = f".{name}{kind}"
    return sorted(os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix))


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def fsync_directory(path):
    """Makes the entries (creations, renames) of directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """`fsync`s every file and directory under `path` (or the file `path`)."""
    if not os.path.isdir(path):
        with open(path, "rb") as file:
            os.fsync(file.fileno())
        return
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_tree(os.path.join(root, name))
        fsync_directory(root)


def recover(path):
    """Repairs what a killed write to `path` left, so `path` is complete or absent.

    Restores the previous version from `.NAME.old-*` when a kill fell between
    the two renames of a directory replacement, then deletes temporary and old
    siblings (partial or superseded writes).
    """
    path = os.path.abspath(os.fspath(path))
    old = _siblings(path, OLD)
    if old and not os.path.lexists(path):
        os.rename(old.pop(), path)
        fsync_directory(os.path.dirname(path))
    for leftover in _siblings(path, TMP) + old:
        _remove(leftover)


def _replace(new, path):
    """Moves the complete, fsynced `new` to `path`, replacing what is there."""
    parent = os.path.dirname(path)
    if os.path.isdir(path) and not os.path.islink(path):
        old = _sibling(path, OLD)
        os.rename(path, old)
        os.rename(new, path)
        fsync_directory(parent)
        shutil.rmtree(old)
    else:
        os.replace(new, path)
        fsync_directory(parent)


@contextlib.contextmanager
def atomic_directory(path, marker=None):
    """Yields a temporary sibling directory that replaces `path` when the block ends.

    A reader of `path` sees the old directory or the new one, complete (or,
    for the instant between two renames, nothing; see the module docstring).
    If the block raises, `path` is left as it was.

    Args:
        path: the directory to write.
        marker: optional file name; an existing non-empty `path` is replaced only
            if it holds this file (e.g. `"saved_model.pb"`), so a directory that
            is not such an artifact is never deleted. Defaults to `None` (any).

    Use: `with atomic_directory(path) as tmp: tf.saved_model.save(module, tmp)`.
    """
    if _remote(path):
        yield os.fspath(path)
        return
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    recover(path)
    if os.path.lexists(path):
        _check_replaceable(path, marker)
    new = _sibling(path, TMP)
    os.mkdir(new)
    try:
        yield new
        fsync_tree(new)
        _replace(new, path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path):
    """Yields a temporary sibling file name that replaces the file `path` when the block ends.

    Use: `with atomic_file(path) as tmp, open(tmp, "wb") as file: np.savez(file, x=x)`.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot write a file over the directory {path!r}.")
    recover(path)
    new = _sibling(path, TMP)
    try:
        yield new
        fsync_tree(new)
        _replace(new, path)
    except BaseException:
        if os.path.lexists(new):
            os.remove(new)
        raise


def _remote(path):
    """Whether `path` names a TensorFlow filesystem (`gs://...`), not a local path."""
    return "://" in os.fspath(path)


def _check_replaceable(path, marker):
    if not os.path.isdir(path):
        raise FileExistsError(f"{path!r} exists and is not a directory; not replacing it.")
    if marker is not None and os.listdir(path) and not os.path.exists(os.path.join(path, marker)):
        raise FileExistsError(
            f"{path!r} is a non-empty directory without {marker!r}, so it is not an earlier "
            "export; refusing to replace it. Choose a new path or remove it."
        )
