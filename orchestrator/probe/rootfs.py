"""Read host files through a root directory, turning every failure into a note.

Every probe module reads ``/proc``, ``/sys`` and ``/etc`` through :class:`RootFs`, so the same
code runs on the live machine (root ``/``) and on recorded trees under
``tests/fixtures/hosts/<name>/``. A missing file is ordinary (``None``, no note); a file that
exists but cannot be read or decoded is recorded as a full-sentence note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def split_lines(text: str, separator: str) -> Iterator[tuple[str, str]]:
    """(before, after) ``separator`` for each line of ``text`` that contains it; other lines are skipped.

    The shape of /proc files: ``key: value`` (cpuinfo, status) or ``mount fields - fs fields``
    (mountinfo).
    """
    for line in text.splitlines():
        before, sep, after = line.partition(separator)
        if sep:
            yield before, after


class RootFs:
    """Host files seen through ``root``; collects notes about files that could not be read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.is_live = root.resolve() == Path("/")
        self.notes: list[str] = []
        self.paths_read: set[str] = set()
        """Absolute host paths that existed and were read (the recorder copies these)."""

    def path(self, host_path: str) -> Path:
        """Where the host's ``host_path`` (absolute, e.g. ``/proc/meminfo``) lies under root."""
        return self.root / host_path.lstrip("/")

    def exists(self, host_path: str) -> bool:
        try:
            found = self.path(host_path).exists()
        except OSError:
            return False
        if found:
            self.paths_read.add(host_path)
        return found

    def read_text(self, host_path: str) -> str | None:
        """The file's text, or None when it is missing (silently) or unreadable (with a note)."""
        target = self.path(host_path)
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except PermissionError:
            self.note(f"Could not read {host_path}: permission denied.")
            return None
        except IsADirectoryError:
            self.note(f"Could not read {host_path}: it is a directory, expected a file.")
            return None
        except OSError as exc:
            self.note(f"Could not read {host_path}: {exc.strerror or exc}.")
            return None
        self.paths_read.add(host_path)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.note(f"{host_path} is not valid UTF-8 text; undecodable bytes were replaced.")
            return raw.decode("utf-8", errors="replace")

    def parse(self, host_path: str, parser: Callable[[str], T], consequence: str = "it was ignored") -> T | None:
        """``parser`` applied to the file's text; None when the file is missing or unreadable, or
        when ``parser`` raises ValueError (then noted: "<path> is garbled (...); <consequence>.")."""
        text = self.read_text(host_path)
        if text is None:
            return None
        try:
            return parser(text)
        except ValueError as exc:
            self.note(f"{host_path} is garbled ({exc}); {consequence}.")
            return None

    def note(self, sentence: str) -> None:
        if sentence not in self.notes:
            self.notes.append(sentence)
