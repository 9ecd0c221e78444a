"""The grammar of device.json5 (docs/device-file.md) as a checker: the tokens the station may
write, which strict JSON, JSON5 and the Ioto agent's parser all read alike."""

from __future__ import annotations

import re

# A string: double quotes, no control character (a NUL would end the agent's text), escapes
# \" and \\ only (the agent keeps one byte of a \uXXXX escape).
_STRING = r'"(?:[^"\\\x00-\x1f\x7f-\x9f]|\\["\\])*"'
# A number: strict JSON's grammar, and the agent's primitive alphabet (no '+').
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?"
_VALUE = rf"(?:{_STRING}|{_NUMBER}|true|false)"
_MEMBER = rf"    {_STRING}: {_VALUE}"
_FILE = re.compile(rf"\{{\n{_MEMBER}(?:,\n{_MEMBER})*\n\}}\n\Z")


def violations(text: str) -> list[str]:
    """Why `text` is not in the grammar (empty when it is)."""
    problems = []
    if not _FILE.match(text):
        problems.append("not one object of \"key\": value members in the device file's form")
    if "\x00" in text:
        problems.append("holds a NUL byte")
    if "\\u" in text:
        problems.append("uses a \\u escape")
    if re.search(r"[0-9.]e\+|[^\"\w]\+[0-9]", text):
        problems.append("has a '+' in a number")
    if re.search(r":\s*(?:Infinity|-Infinity|NaN)\b", text):
        problems.append("has a non-finite number")
    return problems
