"""The one error a statement parser raises."""

from __future__ import annotations


class StatementParseError(ValueError):
    """A statement file that cannot be read as what it claims to be.

    ``reason`` is the bare explanation; ``str(error)`` prefixes it with where it was found, when
    known: the XML ``line`` and ``element`` path (``Stmt[1]/Ntry[2]/Amt``) of a camt.053 document,
    or the CSV ``row`` (the header is row 1) and ``column``. The message is always one line, so
    that a command can print it as is.
    """

    def __init__(
        self,
        reason: str,
        *,
        line: int | None = None,
        element: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = " ".join(reason.split())
        self.line = line
        self.element = element
        self.row = row
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.element is not None:
            where.append(self.element)
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def __str__(self) -> str:
        return self._render()

    def at(
        self,
        *,
        line: int | None = None,
        element: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> StatementParseError:
        """The same error, placed where the caller found it (what is already known is kept)."""
        return type(self)(
            self.reason,
            line=self.line if self.line is not None else line,
            element=self.element if self.element is not None else element,
            row=self.row if self.row is not None else row,
            column=self.column if self.column is not None else column,
        )


class CsvMappingError(StatementParseError):
    """A CSV mapping that cannot be applied (unknown key, conflicting options, bad separator)."""
