"""The one atomic writer: whole file or old file, the requested mode, no temp file left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.files import write_json_atomic, write_text_atomic


def test_writes_with_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "secret.env"
    write_text_atomic(target, "A=1\n", mode=0o600)
    assert target.read_text(encoding="utf-8") == "A=1\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.env"]


def test_replaces_by_rename_so_a_reader_never_sees_half(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    write_json_atomic(target, {"a": 1})
    before = target.stat().st_ino
    with target.open(encoding="utf-8") as reader:  # an open reader keeps the old file
        write_json_atomic(target, {"a": 2, "b": [1, 2]})
        assert json.load(reader) == {"a": 1}
    assert target.stat().st_ino != before
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 2, "b": [1, 2]}
    assert target.read_text(encoding="utf-8").endswith("\n")


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(TypeError):  # the text cannot be written: fails after the temp file exists
        write_text_atomic(target, object())  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
