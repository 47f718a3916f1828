"""Problems found in job files: data, never exceptions that reach the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem: `jobs/web.hcl:11: job.web.group.api...: message`."""

    file: str
    line: int | None
    path: str
    message: str
    severity: Severity = "error"
    column: int | None = None
    excerpt: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        label = "" if self.severity == "error" else "warning: "
        text = f"{where}: {label}{self.path + ': ' if self.path else ''}{self.message}"
        return text + ("\n" + self.excerpt if self.excerpt else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }
