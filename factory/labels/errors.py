"""The labels' exception family: a bad template file, or label data a good template cannot hold."""

from __future__ import annotations

from pathlib import Path


class LabelError(ValueError):
    """Base of every error the labels package raises on purpose."""


class TemplateError(LabelError):
    """A template file that cannot be used: which file, which element, and why."""

    def __init__(self, template: str | Path, element: str, reason: str) -> None:
        self.template, self.element, self.reason = str(template), element, reason
        where = f"{template}: {element}" if element else str(template)
        super().__init__(f"{where}: {reason}")


class ContentError(LabelError):
    """One label's data does not fit its template (text too wide, a QR that would be too dense,
    a placeholder with no value); the template itself is fine."""

    def __init__(self, template: str | Path, element: str, uci: str, reason: str) -> None:
        self.template, self.element, self.uci, self.reason = str(template), element, uci, reason
        where = f"{template}: {element}" if element else str(template)
        super().__init__(f"{where}: label {uci}: {reason}")
