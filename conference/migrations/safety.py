"""
What the runner refuses on a table that existed before the migration, the
safe recipe for each, and how a migration acknowledges one it means.

The rules follow Rails' strong_migrations and squawk: an operation is
refused when it takes an ``ACCESS EXCLUSIVE`` lock for as long as it scans
or rewrites the table (writes stall for the whole time), or when it breaks
the code that is still running during a deploy (a dropped or renamed column
or table). Everything else on that list is made safe automatically (see
:mod:`conference.migrations.planner`).

A migration acknowledges an operation with a module-level dict whose keys
are the ones the refusal prints, and whose values say why it is safe here::

    ACKNOWLEDGE_UNSAFE = {
        "drop_column analytics.legacy_payload": "nothing reads it since 2026-10 (release 41)",
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from conference.errors import MigrationError

#: The module-level name of a migration's acknowledgements.
ACKNOWLEDGEMENTS = "ACKNOWLEDGE_UNSAFE"

#: Each rule: what it is, and the recipe that gets the same result safely.
RULES: dict[str, tuple[str, str]] = {
    "alter_column_type": (
        "changing the type of column {target} rewrites the table under an ACCESS "
        "EXCLUSIVE lock (every read and write waits for the whole rewrite)",
        "expand/contract: 1. add a new column of the new type (nullable, no default); "
        "2. write both columns in the code; 3. backfill the new column in batches "
        "(conference.migrations.backfill); 4. switch readers to the new column; "
        "5. drop the old column in a later release. Widening varchar(n) to a larger "
        "n or to text rewrites nothing: acknowledge that with its reason.",
    ),
    "set_not_null": (
        "SET NOT NULL on column {target} scans the whole table under an ACCESS EXCLUSIVE lock",
        "1. ADD CONSTRAINT <table>_<column>_not_null CHECK (<column> IS NOT NULL) NOT "
        "VALID (the runner does this part for you if the migration only adds the "
        "check); 2. backfill NULLs in batches (conference.migrations.backfill); "
        "3. VALIDATE CONSTRAINT in a later migration (no write lock); 4. then SET NOT "
        "NULL, which uses the validated check instead of a scan (the runner allows "
        "it once that check is validated), and drop the check.",
    ),
    "volatile_default": (
        "adding column {target} with a volatile default ({detail}) rewrites the "
        "table under an ACCESS EXCLUSIVE lock",
        "1. add the column with no default (or a constant one); 2. SET DEFAULT "
        "<expression> in the same or a later migration (applies to new rows only, "
        "instant); 3. backfill existing rows in batches "
        "(conference.migrations.backfill).",
    ),
    "drop_column": (
        "dropping column {target} breaks the code still running during the deploy "
        "(its SELECTs and INSERTs name the column)",
        "1. stop reading and writing the column in the code (Piccolo: remove it from "
        "tables.py and deploy with the migration held back, or mark it secret/"
        "unused); 2. once no running release uses it, drop it in a migration that "
        "acknowledges drop_column with the release that stopped using it.",
    ),
    "rename_column": (
        "renaming column {target} breaks the code still running during the deploy",
        "expand/contract: add the new column, write both, backfill in batches, "
        "switch readers, then drop the old column later (acknowledged). Or keep the "
        "database name and rename only the Python attribute (db_column_name=...).",
    ),
    "drop_table": (
        "dropping table {target} breaks the code still running during the deploy "
        "and loses its rows",
        "1. stop using the table in the code and deploy; 2. back it up if its rows "
        "matter; 3. drop it in a later migration that acknowledges drop_table.",
    ),
    "rename_table": (
        "renaming table {target} breaks the code still running during the deploy",
        "create the new table, write both, backfill in batches, switch readers, drop "
        "the old one later (acknowledged); or keep the table name "
        "(class X(Table, tablename='old_name')).",
    ),
    "unnamed_constraint": (
        "an unnamed {detail} constraint on {target} cannot be validated in a step of its own",
        "give the constraint a name (ADD CONSTRAINT <name> ...); the runner then adds "
        "it NOT VALID and validates it without blocking writes.",
    ),
}


@dataclass(frozen=True)
class Refusal:
    """
    One operation the runner will not run as written.

    :param rule: a key of :data:`RULES`.
    :param target: ``table`` or ``table.column``.
    :param statement: the SQL that would do it.
    :param detail: the part of the statement that makes it unsafe.
    """

    rule: str
    target: str
    statement: str
    detail: str = ""

    @property
    def key(self) -> str:
        """What a migration writes in ``ACKNOWLEDGE_UNSAFE`` to allow it."""
        return f"{self.rule} {self.target}"

    def describe(self) -> str:
        """The operation, why it is refused, the recipe, and how to acknowledge it."""
        what, recipe = RULES[self.rule]
        return (
            f"{what.format(target=self.target, detail=self.detail)}.\n"
            f"    statement: {self.statement}\n"
            f"    safe recipe: {recipe}\n"
            f"    if it is safe here (e.g. the table is empty), acknowledge it in the "
            f"migration: {ACKNOWLEDGEMENTS} = {{{self.key!r}: '<why it is safe>'}}"
        )


def acknowledgements(module: ModuleType) -> dict[str, str]:
    """A migration's ``ACKNOWLEDGE_UNSAFE``, checked: known rules, a reason each."""
    declared = getattr(module, ACKNOWLEDGEMENTS, None) or {}
    if not isinstance(declared, dict):
        raise MigrationError(
            f"{module.__name__}: {ACKNOWLEDGEMENTS} must be a dict of "
            "'<rule> <table>[.<column>]' -> '<why it is safe>'"
        )
    for key, reason in declared.items():
        rule = str(key).split(" ", 1)[0]
        if rule not in RULES or " " not in str(key):
            raise MigrationError(
                f"{module.__name__}: {ACKNOWLEDGEMENTS} key {key!r} is not "
                f"'<rule> <table>[.<column>]' with a rule among {', '.join(sorted(RULES))}"
            )
        if not str(reason).strip():
            raise MigrationError(
                f"{module.__name__}: {ACKNOWLEDGEMENTS}[{key!r}] needs a reason: say why "
                "it is safe here"
            )
    return {str(key): str(reason) for key, reason in declared.items()}


#: squawk's rule for each of ours, so that an acknowledged operation is
#: not reported again by ``make lint``.
SQUAWK_RULES: dict[str, tuple[str, ...]] = {
    "alter_column_type": ("changing-column-type",),
    "set_not_null": ("adding-not-nullable-field",),
    "volatile_default": ("adding-field-with-default",),
    "drop_column": ("ban-drop-column",),
    "rename_column": ("renaming-column",),
    "drop_table": ("ban-drop-table",),
    "rename_table": ("renaming-table",),
    "unnamed_constraint": ("constraint-missing-not-valid", "adding-foreign-key-constraint"),
}
