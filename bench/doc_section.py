"""A benchmark's own section of docs/performance.md, rewritten between its two markers.

Each script under ``bench/`` owns one section, fenced by an HTML comment pair
(``<!-- bench/NAME.py results: begin ... -->`` and ``... end -->``); ``--write``
replaces what lies between them and leaves the rest of the file as it was.
"""

from __future__ import annotations

from pathlib import Path


def replace_section(
    path: Path, begin: str, end: str, text: str, *, new_doc: str | None = None
) -> None:
    """Put ``text`` between the markers ``begin`` and ``end`` of ``path``.

    ``new_doc`` is the file to start from when ``path`` does not exist yet (it
    must hold both markers); without it a missing file is an error, as is a
    file without the markers.
    """
    content = new_doc if new_doc is not None and not path.exists() else path.read_text()
    start, stop = content.find(begin), content.find(end)
    if start < 0 or stop < start:
        raise SystemExit(f"{path}: no {begin} ... {end} section")
    head, tail = content[: start + len(begin)], content[stop:]
    path.write_text(head + "\n" + text.rstrip("\n") + "\n" + tail)
