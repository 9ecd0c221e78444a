"""The {placeholders} a template's text, QR and barcode contents may use, and their worst cases.

A template is checked when it is loaded against the costliest value each placeholder can take,
so a label never turns out too dense to scan because one unit's data was longer.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping

from factory import uci
from factory.labels.metrics import text_width

# The longest value of each placeholder, made of the characters that cost most in a QR code
# ('x' only fits byte mode, 'Z' alphanumeric, '~' is a check symbol that forces byte mode).
# Free text is capped in UTF-8 bytes; a longer value is refused when a label is laid out.
SAMPLES: Mapping[str, str] = {
    "uci": "Z" * uci.LENGTH,
    "human": "-".join(["ZZZZ"] * (uci.LENGTH // 4)) + "-~",
    "product": "x" * 64,
    "name": "x" * 64,
    "model": "x" * 32,
    "date": "2000-12-31",
    "claim_secret": "ZZZZ-ZZZZ-ZZZZ-ZZZZ",  # factory/claim_secret.py's form
}
# Placeholders whose printed width is known in advance (the rest are measured per label).
_FIXED_CHARS: Mapping[str, list[str]] = {
    "uci": [uci.ALPHABET] * uci.LENGTH,
    "human": ([uci.ALPHABET] * 4 + ["-"]) * (uci.LENGTH // 4) + [uci.CHECK_ALPHABET],
    "date": [string.digits] * 4 + ["-"] + [string.digits] * 2 + ["-"] + [string.digits] * 2,
    "claim_secret": ([uci.ALPHABET] * 4 + ["-"]) * 3 + [uci.ALPHABET] * 4,
}
_FORMATTER = string.Formatter()


@functools.lru_cache(maxsize=256)  # layout asks for every label; templates have few strings
def names_in(fmt: str) -> tuple[str, ...]:
    """The placeholders `fmt` uses; ValueError names an unknown or malformed one."""
    try:
        parts = list(_FORMATTER.parse(fmt))
    except ValueError as exc:
        raise ValueError(f"{fmt!r} is not a format string ({exc}); write a literal brace as "
                         "{{ or }}") from exc
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in SAMPLES:
            known = " ".join(f"{{{n}}}" for n in SAMPLES)
            raise ValueError(f"unknown placeholder {{{name}}} in {fmt!r}; known: {known}")
        if spec or conversion:
            raise ValueError(f"{{{name}}} takes no format spec or conversion in {fmt!r}")
        names.append(name)
    return tuple(names)


def worst_case(fmt: str) -> str:
    """`fmt` filled with the costliest value of each placeholder (for QR and barcode sizing)."""
    return fmt.format_map(SAMPLES)


def widest_fixed(fmt: str, font: str) -> str:
    """`fmt` with fixed-width placeholders as their widest glyphs in `font`, free ones empty."""
    def widest(chars: str) -> str:
        return max(chars, key=lambda ch: text_width(ch, font, 1000))

    values = {name: "" for name in SAMPLES}
    for name, positions in _FIXED_CHARS.items():
        values[name] = "".join(widest(chars) for chars in positions)
    return fmt.format_map(values)
