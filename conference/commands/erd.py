"""``piccolo conference erd``: the schema as a Mermaid diagram, for README.md."""

from __future__ import annotations

from conference import erd as diagrams
from conference.commands.cli import exit_on_error, fail
from conference.tables import APP_TABLES, TABLES


@exit_on_error(OSError, ValueError)
def erd(write: bool = False, all_tables: bool = False) -> None:
    """
    Print the Mermaid erDiagram of the conference tables, generated from
    conference/tables.py (GitHub draws it). tests/test_erd.py fails when
    README.md's copy no longer matches the tables.

    :param write:
        Redraw the diagram in README.md instead of printing it.
    :param all_tables:
        Every table of the app (erasure records, report rollups too), not
        only the four conference tables. Not with --write.
    """
    tables = list(APP_TABLES if all_tables else TABLES)
    if not write:
        print(diagrams.markdown_block(tables), end="")
        return
    if all_tables:
        fail("README.md shows the four conference tables; drop --all_tables to redraw it")
    diagrams.README.write_text(diagrams.redraw(diagrams.README.read_text(), tables))
    print(f"Redrew the diagram in {diagrams.README}.")
