"""What the ``payload_check`` task computes, for the Python worker and for the tests that check
the three languages' answers (the Rust and Ruby programs write the same out)."""

from __future__ import annotations

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def fnv1a(data: bytes) -> str:
    """FNV-1a, 64 bits, of ``data``, as 16 lower-case hex digits."""
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return f"{h:016x}"


def blob(doc: str, chars: int) -> str:
    """``doc`` repeated (``-`` if it is empty) and cut to ``chars`` characters."""
    source = doc or "-"
    return (source * (chars // len(source) + 1))[:chars]
