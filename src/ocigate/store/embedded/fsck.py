"""Offline (or online: it is read-only) consistency check of an embedded store's data directory.

Problems are things that are wrong: a blob file whose content does not hash to its name, metadata
pointing at a blob file or manifest that does not exist, a manifest row whose bytes do not hash to
its digest. Info is what a crash may legitimately leave behind and is never visible to clients:
temporary files, upload sessions in progress or abandoned (removed by upload expiry).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...oci.digest import Digest
from .blobfiles import BlobFiles, hash_file
from .gc_lock import FileLock
from .metadata import connect


@dataclass(slots=True)
class FsckReport:
    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


def fsck(data_dir: Path) -> list[str]:
    """Human-readable problems of the store at ``data_dir``; empty when it is consistent."""
    return check(data_dir).problems


def check(data_dir: Path) -> FsckReport:
    report = FsckReport()
    db_path = data_dir / "meta.db"
    if not db_path.is_file():
        report.problems.append(f"{data_dir}: no embedded store here (meta.db is missing)")
        return report
    blobs = BlobFiles(data_dir)
    # Shared, like a commit: the GC sweep cannot remove files while we compare.
    with FileLock(data_dir / "gc.lock").held(exclusive=False):
        files = _check_files(data_dir, blobs, report)
        _check_metadata(db_path, blobs, files, report)
    _check_leftovers(data_dir, report)
    return report


def _check_files(data_dir: Path, blobs: BlobFiles, report: FsckReport) -> dict[str, int]:
    """Re-hash every blob file; the sizes of the good ones by digest."""
    files: dict[str, int] = {}
    for digest, path in blobs.walk():
        where = path.relative_to(data_dir)
        if digest is None:
            report.problems.append(f"{where}: unexpected file in the blob store")
            continue
        try:
            actual, size = hash_file(path, digest.algorithm)
        except OSError as exc:
            report.problems.append(f"{where}: unreadable: {exc}")
            continue
        if actual != digest.encoded:
            report.problems.append(
                f"{where}: corrupted, content hashes to {digest.algorithm}:{actual}"
            )
            continue
        files[str(digest)] = size
    return files


def _check_metadata(
    db_path: Path, blobs: BlobFiles, files: dict[str, int], report: FsckReport
) -> None:
    def has_file(digest: str) -> bool:
        # A commit may have added the file after the walk: look again before complaining.
        if digest in files:
            return True
        try:
            return blobs.path(Digest.parse(digest)).exists()
        except Exception:
            return False

    conn = connect(db_path, readonly=True)
    try:
        integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
        if integrity != "ok":
            report.problems.append(f"meta.db: integrity check failed: {integrity}")
        conn.execute("BEGIN")  # one snapshot for all the reads below
        manifests: set[tuple[str, str]] = set()
        rows = conn.execute("SELECT repo, digest, data, size FROM manifests")
        for repo, digest, data, size in rows:
            manifests.add((repo, digest))
            check_manifest_row(repo, digest, bytes(data), size, report)
            if not has_file(digest):
                report.problems.append(f"manifest {repo}@{digest}: its blob file is missing")
        for repo, digest, size in conn.execute("SELECT repo, digest, size FROM repo_blobs"):
            if not has_file(digest):
                report.problems.append(f"repository {repo} links missing blob {digest}")
            elif digest in files and files[digest] != size:
                report.problems.append(
                    f"repository {repo} records size {size} for {digest} of {files[digest]} bytes"
                )
        for repo, tag, digest in conn.execute("SELECT repo, tag, digest FROM tags"):
            if (repo, digest) not in manifests:
                report.problems.append(f"tag {repo}:{tag} points at missing manifest {digest}")
        rows = conn.execute("SELECT repo, manifest, digest, kind FROM manifest_refs")
        for repo, manifest, digest, kind in rows:
            if (repo, manifest) not in manifests:
                report.problems.append(f"reference from missing manifest {repo}@{manifest}")
            elif kind == "blob" and not has_file(digest):
                report.problems.append(
                    f"manifest {repo}@{manifest} references missing blob {digest}"
                )
        conn.execute("COMMIT")
    finally:
        conn.close()


def check_manifest_row(repo: str, digest: str, data: bytes, size: int, report: FsckReport) -> None:
    """A stored manifest's bytes hash to its digest and have its recorded size."""
    algorithm, _, encoded = digest.partition(":")
    try:
        actual = hashlib.new(algorithm, data).hexdigest()
    except ValueError:
        actual = ""
    if actual != encoded:
        report.problems.append(f"manifest {repo}@{digest}: stored bytes do not match")
    elif size != len(data):
        report.problems.append(f"manifest {repo}@{digest}: size {size} != {len(data)}")


def _check_leftovers(data_dir: Path, report: FsckReport) -> None:
    for name in ("tmp", "uploads"):
        directory = data_dir / name
        if directory.is_dir():
            for entry in sorted(os.listdir(directory)):
                kind = "temporary file" if name == "tmp" else "upload session (unfinished)"
                report.info.append(f"{name}/{entry}: {kind}")
