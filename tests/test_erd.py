"""
The Mermaid diagram in README.md is the one ``conference/tables.py`` gives
(``piccolo conference erd``), so it cannot drift from the code.
"""

from __future__ import annotations

import subprocess

import pytest
from piccolo.columns import ForeignKey, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from conference import erd
from conference.piccolo_app import APP_CONFIG
from conference.tables import TABLES
from tests.support import PICCOLO, ROOT

README = ROOT / "README.md"


def _schema_section() -> str:
    text = README.read_text()
    start = text.index("\n## Schema\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_the_readme_diagram_is_the_one_the_tables_give() -> None:
    drawn = erd.block_in(_schema_section())
    assert drawn is not None, "README's Schema section has no generated diagram"
    assert drawn == erd.markdown_block(TABLES), (
        "README.md's diagram no longer matches conference/tables.py: run "
        "`piccolo conference erd --write` and commit README.md"
    )


def test_every_other_table_of_the_app_is_named_in_the_schema_section() -> None:
    others = [t._meta.tablename for t in APP_CONFIG.table_classes if t not in TABLES]
    section = _schema_section()
    assert [name for name in others if f"`{name}`" not in section] == []


class Room(Table, tablename="erd_test_rooms"):
    name = Varchar(length=64, unique=True)
    opened_at = Timestamptz(null=True, default=None)


class Visit(Table, tablename="erd_test_visits"):
    room = ForeignKey(references=Room, null=False, on_delete=OnDelete.cascade)
    previous = ForeignKey(references=Room, null=True, on_delete=OnDelete.set_null)


def test_the_diagram_shows_types_keys_nullability_and_references() -> None:
    assert erd.mermaid([Room, Visit]).splitlines() == [
        "erDiagram",
        "    erd_test_rooms ||--o{ erd_test_visits : room",
        "    erd_test_rooms |o--o{ erd_test_visits : previous",
        "    erd_test_rooms {",
        "        serial id PK",
        "        varchar name UK",
        '        timestamptz opened_at "null"',
        "    }",
        "    erd_test_visits {",
        "        serial id PK",
        "        integer room FK",
        '        integer previous FK "null"',
        "    }",
    ]


def test_redraw_replaces_the_block_and_nothing_else() -> None:
    text = f"# Title\n\nbefore\n\n{erd.markdown_block([Room])}\nafter\n"
    redrawn = erd.redraw(text, [Room, Visit])
    assert redrawn == f"# Title\n\nbefore\n\n{erd.markdown_block([Room, Visit])}\nafter\n"
    with pytest.raises(ValueError, match="no diagram block"):
        erd.redraw("# no diagram here\n", [Room])


def test_the_command_prints_the_diagram_of_every_table_when_asked() -> None:
    printed = subprocess.run(
        [PICCOLO, "conference", "erd", "--all_tables"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == erd.markdown_block(APP_CONFIG.table_classes)
