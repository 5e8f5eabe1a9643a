"""Writing a small file so that a reader never sees half of it.

Key files, the console's secret and passkeys are read by other processes (the
service's workers, the next start) while they are being replaced. Writing in
place would let a reader see a truncated document, and a crash mid-write would
leave one. So every such file is written to a temporary name in the same folder,
flushed to disk, given its permissions, and renamed over the target: POSIX
rename is atomic, so a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic"]


def write_text_atomic(path: Path, text: str, *, mode: int | None = None,
                      fsync: bool = True) -> None:
    """Replace ``path`` with ``text`` (UTF-8) through a temporary name and a rename.

    ``mode`` (e.g. ``0o600`` for secrets) is set before the rename, so the file is
    never readable by others even for an instant. ``fsync`` makes the content
    durable before it becomes visible; switch it off only for files that can be
    recomputed. On any error the temporary file is removed and the target is
    left as it was.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
