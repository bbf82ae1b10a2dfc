"""Sizes: the one parser and the one formatter.

Every size Tailor reads (profiles, the config file, docker-compose ``mem_limit``/``shm_size``)
goes through :func:`parse_size`, and every unit is **binary**: ``K``/``KB``/``KiB`` = 1024,
``M``/``MB``/``MiB`` = 1024², ``G``/``GB``/``GiB`` = 1024³, ``T``/``TB``/``TiB`` = 1024⁴,
case-insensitive, with an optional ``B``. So ``1GB``, ``1g`` and ``1GiB`` are all 2³⁰ bytes, as
Docker and Compose read ``1g``; a plain number is bytes. Output is always written with ``KiB``,
``MiB``, ``GiB`` (:func:`format_size`), or ``m``/``Mi`` where compose and Kubernetes want them.
Sizes that are compared in one sentence go through :func:`format_sizes`, which shows enough
digits to tell different values apart (``1.46 GiB < 1.50 GiB``, never ``1.5 GiB < 1.5 GiB``).
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE_EXAMPLES = "a size like 8GiB, 512MiB, 512m or a number of bytes"


def parse_size(text: str) -> int | None:
    """Bytes from ``8GiB``, ``512MiB``, ``1.5G``, ``256m``, ``1024``; None when ``text`` is not a size."""
    match = _SIZE.match(text)
    if not match:
        return None
    return int(float(match.group(1)) * _FACTOR[(match.group(2) or "").lower()])


def format_size(num_bytes: int | float) -> str:
    """Human size in binary units with one decimal: ``7.5 GiB``."""
    return _with_decimals(num_bytes, 1)


def _with_decimals(num_bytes: int | float, decimals: int) -> str:
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.{decimals}f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_sizes(*sizes: int | float) -> tuple[str, ...]:
    """Sizes compared with each other, each as :func:`format_size` writes it but with as many
    decimals (1 to 3) as it takes for different byte counts to read differently:
    ``(1500 MiB, 1536 MiB)`` -> ``("1.46 GiB", "1.50 GiB")``, never ``1.5 GiB < 1.5 GiB``.
    Where even 3 decimals tie, the byte counts are added."""
    texts: tuple[str, ...] = ()
    for decimals in (1, 2, 3):
        texts = tuple(_with_decimals(s, decimals) for s in sizes)
        if all(texts[i] != texts[j] for i in range(len(sizes)) for j in range(i) if int(sizes[i]) != int(sizes[j])):
            return texts
    return tuple(f"{t} ({int(s):,} bytes)" for t, s in zip(texts, sizes, strict=True))
