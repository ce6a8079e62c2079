"""
The planner: a Piccolo migration's SQL in, a list of steps out, as data.

Each statement is parsed with PostgreSQL's own parser (``pglast``) and
classified against the tables that existed before the migration (tables it
creates itself need nothing special):

- ``CREATE [UNIQUE] INDEX`` on an existing table: ``CONCURRENTLY``, in a
  step of its own outside any transaction.
- ``UNIQUE`` (a column's or ``ADD CONSTRAINT … UNIQUE``): a unique index
  built concurrently, then ``ADD CONSTRAINT … UNIQUE USING INDEX``.
- ``DROP INDEX``: ``DROP INDEX CONCURRENTLY IF EXISTS``, outside a transaction.
- ``CHECK`` and ``FOREIGN KEY`` (a column's or ``ADD CONSTRAINT``):
  ``NOT VALID`` in the migration's transaction, then ``VALIDATE CONSTRAINT``
  in a transaction of its own (which does not block writes).
- Refused (see :mod:`conference.migrations.safety`): a type change, ``SET
  NOT NULL`` without a validated check, a new column with a volatile
  default, dropping or renaming a column or a table — unless acknowledged.

Consecutive transactional statements stay together in one transaction, in
the migration's order; the ledger row joins the last transaction, or gets
one of its own after a concurrent step.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError
from pglast.stream import RawStream

from conference.errors import MigrationError

from .ledger import MigrationFile
from .safety import SQUAWK_RULES, Refusal

#: Functions that give each row its own value: as a new column's default
#: they force a table rewrite (a constant or now() does not).
VOLATILE_FUNCTIONS = frozenset(
    {
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v4",
        "random",
        "clock_timestamp",
        "timeofday",
        "nextval",
        "txid_current",
        "gen_random_bytes",
    }
)


@dataclass(frozen=True)
class Statement:
    """
    One SQL statement of a step.

    :param lock: the lock it takes, e.g. ``ACCESS EXCLUSIVE on analytics``.
    :param safety: why it is safe (``new table``, ``brief lock``, the
        rewrite made, or the acknowledgement's reason).
    :param squawk_ignore: squawk rules an acknowledgement covers.
    """

    sql: str
    lock: str
    safety: str
    tables: tuple[str, ...] = ()
    squawk_ignore: tuple[str, ...] = ()


@dataclass
class Step:
    """
    A unit the executor runs, retries and records as one.

    :param transactional: ``BEGIN … COMMIT`` around it (the step's row in
        the ledger commits with it); ``False`` for ``CONCURRENTLY``.
    :param waits_without_blocking: its lock does not conflict with reads or
        writes, so waiting for it stalls nobody: it may wait out the whole
        retry budget instead of ``MIGRATION_LOCK_TIMEOUT``.
    :param builds_index: for a concurrent build, the index's name: a run
        finding it ``INVALID`` (a build killed halfway) drops and rebuilds it;
        finding it valid, skips the step.
    :param opaque: a raw Python step whose SQL the runner cannot see: it
        runs Piccolo's ``MigrationManager.run()`` in one transaction.
    :param records_ledger: the migration's ledger row commits with this step.
    """

    number: int
    statements: list[Statement]
    transactional: bool = True
    waits_without_blocking: bool = False
    builds_index: str | None = None
    opaque: Any = field(default=None, repr=False)
    records_ledger: bool = False

    @property
    def kind(self) -> str:
        """One word for logs and the dry run."""
        if self.opaque is not None:
            return "python"
        if not self.transactional:
            return "concurrent"
        if self.waits_without_blocking:
            return "validate"
        return "transaction"

    @property
    def key(self) -> str:
        """
        A hash of what the step does: how a resumed run recognises the steps
        done (Piccolo orders a migration's tables differently from one
        process to the next, so numbers alone would not do).
        """
        shape = [self.transactional, [statement.sql for statement in self.statements]]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables its statements lock."""
        seen: dict[str, None] = {}
        for statement in self.statements:
            seen.update(dict.fromkeys(statement.tables))
        return tuple(seen)


@dataclass
class MigrationPlan:
    """
    Everything a migration will do, in order; the dry run prints it and the
    executor runs it, so the two cannot disagree.

    :param refusals: unsafe operations not acknowledged: nothing of this
        migration (or any after it) runs while there is one.
    :param created_tables: tables the migration creates (new: they need no
        concurrent builds or NOT VALID).
    """

    file: MigrationFile
    steps: list[Step]
    refusals: list[Refusal] = field(default_factory=list)
    created_tables: frozenset[str] = frozenset()
    dropped_tables: frozenset[str] = frozenset()
    acknowledged: dict[str, str] = field(default_factory=dict)
    backwards: bool = False

    @property
    def step_keys(self) -> set[str]:
        """The key of every step."""
        return {step.key for step in self.steps}


@dataclass(frozen=True)
class Catalog:
    """
    What the planner needs to know of the database before a migration.

    :param tables: the tables that exist (unqualified names).
    :param not_null_checks: ``(table, column)`` pairs with a validated
        ``CHECK (column IS NOT NULL)``: ``SET NOT NULL`` then needs no scan.
    """

    tables: frozenset[str] = frozenset()
    not_null_checks: frozenset[tuple[str, str]] = frozenset()

    def after(self, plan: MigrationPlan) -> Catalog:
        """The catalog once ``plan`` has run (for planning the next migration)."""
        return Catalog(
            (self.tables | plan.created_tables) - plan.dropped_tables, self.not_null_checks
        )


# --- Parsing ------------------------------------------------------------------


def _deparse(node: Any) -> str:
    return str(RawStream()(node))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _default_name(table: str, columns: Iterable[str], suffix: str) -> str:
    """PostgreSQL's name for an unnamed constraint (short names: no truncation)."""
    return f"{table}_{'_'.join(columns)}_{suffix}"[:63]


def _names(nodes: Any) -> list[str]:
    return [node.sval for node in nodes or ()]


def _is_volatile(expression: Any) -> str | None:
    """The volatile function ``expression`` calls, if any."""
    for name in re.findall(r"([A-Za-z_][A-Za-z_0-9]*)\s*\(", _deparse(expression)):
        if name.lower() in VOLATILE_FUNCTIONS:
            return f"{name.lower()}()"
    return None


class _Planner:
    """Classifies one migration's statements into steps."""

    def __init__(
        self,
        file: MigrationFile,
        catalog: Catalog,
        acknowledged: dict[str, str],
        created: frozenset[str],
        atomic: bool,
        backwards: bool = False,
    ) -> None:
        self.backwards = backwards
        self.file = file
        self.catalog = catalog
        self.acknowledged = acknowledged
        self.created = created
        self.atomic = atomic
        self.steps: list[Step] = []
        self.refusals: list[Refusal] = []
        self.validations: list[Statement] = []
        self.dropped: set[str] = set()

    # Steps are appended in the migration's order; consecutive
    # transactional statements share a transaction.
    def _transactional(self, statement: Statement) -> None:
        last = self.steps[-1] if self.steps else None
        if (
            self.atomic
            and last is not None
            and last.transactional
            and not last.waits_without_blocking
            and last.opaque is None
        ):
            last.statements.append(statement)
        else:
            self.steps.append(Step(len(self.steps) + 1, [statement]))

    def _concurrent(self, statement: Statement, index: str | None) -> None:
        self.steps.append(
            Step(
                len(self.steps) + 1,
                [statement],
                transactional=False,
                waits_without_blocking=True,
                builds_index=index,
            )
        )

    def _flush_validations(self) -> None:
        for statement in self.validations:
            self.steps.append(Step(len(self.steps) + 1, [statement], waits_without_blocking=True))
        self.validations = []

    def _existing(self, table: str) -> bool:
        return table in self.catalog.tables and table not in self.created

    def _refuse(self, rule: str, target: str, sql: str, detail: str = "") -> Statement | None:
        """The statement as acknowledged, or ``None`` after noting a refusal."""
        refusal = Refusal(rule, target, sql, detail)
        reason = self.acknowledged.get(refusal.key)
        if self.backwards:
            # Reversing a migration drops what it added: that is what the
            # operator asked for, so it runs (noted in the plan), not refused.
            reason = f"reverses the migration ({refusal.key})"
        if reason is None:
            self.refusals.append(refusal)
            return None
        return Statement(
            sql,
            f"ACCESS EXCLUSIVE on {target.split('.')[0]}",
            f"acknowledged {refusal.key}: {reason}",
            (target.split(".")[0],),
            SQUAWK_RULES[rule],
        )

    # --- statements -----------------------------------------------------------

    def add(self, sql: str) -> None:
        try:
            parsed = parse_sql(sql)
        except ParseError as error:
            raise MigrationError(
                f"migration {self.file.name}: PostgreSQL's parser rejects {sql!r}: {error}"
            ) from error
        for raw in parsed:
            text = sql if len(parsed) == 1 else _deparse(raw.stmt)
            self._statement(raw.stmt, text)

    def _statement(self, node: Any, sql: str) -> None:
        if isinstance(node, ast.IndexStmt):
            self._index(node, sql)
        elif isinstance(node, ast.DropStmt):
            self._drop(node, sql)
        elif isinstance(node, ast.RenameStmt):
            self._rename(node, sql)
        elif isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
            self._alter(node, sql)
        elif isinstance(node, ast.CreateStmt | ast.CreateTableAsStmt):
            relation: Any = node.relation if isinstance(node, ast.CreateStmt) else node.into.rel  # type: ignore[union-attr]
            references = sorted(
                {
                    constraint.pktable.relname
                    for constraint in _constraints_of(node)
                    if constraint.contype == ConstrType.CONSTR_FOREIGN
                }
                & self.catalog.tables
            )
            lock = "none on existing tables"
            if references:
                lock = f"SHARE ROW EXCLUSIVE on {', '.join(references)} (brief: the table is empty)"
            self._transactional(Statement(sql, lock, "new table", (relation.relname, *references)))
        else:
            self._transactional(
                Statement(sql, "as the statement needs", "not a schema change on an existing table")
            )

    def _index(self, node: Any, sql: str) -> None:
        table = node.relation.relname
        if node.concurrent or not self._existing(table):
            if node.concurrent:
                self._concurrent(
                    Statement(
                        sql, f"SHARE UPDATE EXCLUSIVE on {table}", "written CONCURRENTLY", (table,)
                    ),
                    node.idxname,
                )
            else:
                self._transactional(
                    Statement(sql, f"SHARE on {table} (new table)", "new table", (table,))
                )
            return
        rewritten = copy.deepcopy(node)
        rewritten.concurrent = True
        self._concurrent(
            Statement(
                _deparse(rewritten),
                f"SHARE UPDATE EXCLUSIVE on {table} (reads and writes go on)",
                "CREATE INDEX made CONCURRENTLY",
                (table,),
            ),
            node.idxname,
        )

    def _drop(self, node: Any, sql: str) -> None:
        if node.removeType == ObjectType.OBJECT_INDEX:
            if node.concurrent or len(node.objects) != 1 or node.behavior.name == "DROP_CASCADE":
                as_written = Statement(
                    sql, "ACCESS EXCLUSIVE on the index's table", "as written", ()
                )
                if node.concurrent:
                    self._concurrent(as_written, None)
                else:
                    self._transactional(as_written)
                return
            rewritten = copy.deepcopy(node)
            rewritten.concurrent = True
            rewritten.missing_ok = True
            self._concurrent(
                Statement(
                    _deparse(rewritten),
                    "SHARE UPDATE EXCLUSIVE on the index's table (reads and writes go on)",
                    "DROP INDEX made CONCURRENTLY",
                ),
                None,
            )
            return
        if node.removeType == ObjectType.OBJECT_TABLE:
            names = [_names(obj)[-1] for obj in node.objects]
            statement: Statement | None = Statement(
                sql, "ACCESS EXCLUSIVE (new table)", "new table", tuple(names)
            )
            for name in names:
                if self._existing(name):
                    statement = self._refuse("drop_table", name, sql)
                self.dropped.add(name)
            if statement is not None:
                self._transactional(statement)
            return
        self._transactional(
            Statement(sql, "ACCESS EXCLUSIVE on what it drops", "not a table or index")
        )

    def _rename(self, node: Any, sql: str) -> None:
        table = node.relation.relname if node.relation is not None else ""
        statement: Statement | None = Statement(
            sql, f"ACCESS EXCLUSIVE on {table} (brief)", "brief lock", (table,)
        )
        if self._existing(table):
            if node.renameType == ObjectType.OBJECT_TABLE:
                statement = self._refuse("rename_table", table, sql)
            elif node.renameType == ObjectType.OBJECT_COLUMN:
                statement = self._refuse("rename_column", f"{table}.{node.subname}", sql)
        if statement is not None:
            self._transactional(statement)

    def _alter(self, node: Any, sql: str) -> None:
        table = node.relation.relname
        if not self._existing(table):
            self._transactional(
                Statement(sql, f"ACCESS EXCLUSIVE on {table} (new table)", "new table", (table,))
            )
            return
        commands = list(node.cmds)
        for command in commands:
            single = sql
            if len(commands) > 1:
                one = copy.deepcopy(node)
                one.cmds = (command,)
                single = _deparse(one)
            self._command(node, command, table, single)

    def _command(self, node: Any, command: Any, table: str, sql: str) -> None:
        subtype = command.subtype
        brief = Statement(
            sql, f"ACCESS EXCLUSIVE on {table} (brief, no scan)", "brief lock", (table,)
        )
        if subtype == AlterTableType.AT_AddColumn:
            self._add_column(node, command, table, sql)
        elif subtype == AlterTableType.AT_AddConstraint:
            self._add_constraint(node, command.def_, table, sql)
        elif subtype == AlterTableType.AT_AlterColumnType:
            self._keep(self._refuse("alter_column_type", f"{table}.{command.name}", sql))
        elif subtype == AlterTableType.AT_SetNotNull:
            if (table, command.name) in self.catalog.not_null_checks:
                self._transactional(
                    Statement(
                        sql,
                        f"ACCESS EXCLUSIVE on {table} (brief: a validated check proves it)",
                        "validated CHECK (… IS NOT NULL) exists",
                        (table,),
                    )
                )
            else:
                self._keep(self._refuse("set_not_null", f"{table}.{command.name}", sql))
        elif subtype == AlterTableType.AT_DropColumn:
            self._keep(self._refuse("drop_column", f"{table}.{command.name}", sql))
        elif subtype == AlterTableType.AT_ValidateConstraint:
            self.validations.append(
                Statement(
                    sql,
                    f"SHARE UPDATE EXCLUSIVE on {table} (reads and writes go on)",
                    "VALIDATE in its own transaction",
                    (table,),
                )
            )
        else:
            self._transactional(brief)

    def _keep(self, statement: Statement | None) -> None:
        if statement is not None:
            self._transactional(statement)

    def _add_column(self, node: Any, command: Any, table: str, sql: str) -> None:
        column = command.def_
        name = column.colname
        moved = []
        acknowledged: Statement | None = None
        for constraint in column.constraints or ():
            if constraint.contype == ConstrType.CONSTR_DEFAULT:
                volatile = _is_volatile(constraint.raw_expr)
                if volatile:
                    acknowledged = self._refuse(
                        "volatile_default", f"{table}.{name}", sql, volatile
                    )
                    if acknowledged is None:
                        return
            if constraint.contype in (
                ConstrType.CONSTR_UNIQUE,
                ConstrType.CONSTR_FOREIGN,
                ConstrType.CONSTR_CHECK,
            ):
                moved.append(constraint)
        if not moved:
            self._transactional(
                acknowledged
                or Statement(
                    sql,
                    f"ACCESS EXCLUSIVE on {table} (brief, no rewrite)",
                    "new nullable or constant-default column",
                    (table,),
                )
            )
            return
        bare = copy.deepcopy(node)
        bare.cmds[0].def_.constraints = (
            tuple(
                c
                for c in column.constraints
                if c.contype
                not in (
                    ConstrType.CONSTR_UNIQUE,
                    ConstrType.CONSTR_FOREIGN,
                    ConstrType.CONSTR_CHECK,
                )
            )
            or None
        )
        self._transactional(
            Statement(
                _deparse(bare),
                f"ACCESS EXCLUSIVE on {table} (brief, no rewrite)",
                "column added without its constraints, which follow",
                (table,),
            )
        )
        for constraint in moved:
            if constraint.contype == ConstrType.CONSTR_UNIQUE:
                index = constraint.conname or _default_name(table, [name], "key")
                self._unique(table, [name], index, constraint.conname is None)
            else:
                suffix = "fkey" if constraint.contype == ConstrType.CONSTR_FOREIGN else "check"
                conname = constraint.conname or _default_name(table, [name], suffix)
                prefix = (
                    f"FOREIGN KEY ({_quote(name)}) "
                    if constraint.contype == ConstrType.CONSTR_FOREIGN
                    else ""
                )
                body = _deparse(constraint)
                if constraint.conname:
                    body = body.split(" ", 2)[2]  # drop "CONSTRAINT name"
                self._not_valid(
                    table,
                    conname,
                    f"ADD CONSTRAINT {_quote(conname)} {prefix}{body} NOT VALID",
                    constraint,
                )

    def _add_constraint(self, node: Any, constraint: Any, table: str, sql: str) -> None:
        contype = constraint.contype
        if contype == ConstrType.CONSTR_UNIQUE and constraint.indexname is None:
            columns = _names(constraint.keys)
            index = constraint.conname or _default_name(table, columns, "key")
            self._unique(table, columns, index, False, constraint)
        elif (
            contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN)
            and not constraint.skip_validation
        ):
            if constraint.conname is None:
                self._keep(
                    self._refuse(
                        "unnamed_constraint",
                        table,
                        sql,
                        "CHECK" if contype == ConstrType.CONSTR_CHECK else "FOREIGN KEY",
                    )
                )
                return
            rewritten = copy.deepcopy(node)
            rewritten.cmds = (copy.deepcopy(node.cmds[0]),)
            rewritten.cmds[0].def_.skip_validation = True
            self._not_valid(table, constraint.conname, _deparse(rewritten), constraint, whole=True)
        else:
            self._transactional(
                Statement(sql, f"ACCESS EXCLUSIVE on {table} (brief)", "brief lock", (table,))
            )

    def _not_valid(
        self, table: str, conname: str, clause: str, constraint: Any, whole: bool = False
    ) -> None:
        sql = clause if whole else f"ALTER TABLE {_quote(table)} {clause}"
        tables: tuple[str, ...] = (table,)
        lock = f"ACCESS EXCLUSIVE on {table} (brief, no scan)"
        if constraint.contype == ConstrType.CONSTR_FOREIGN:
            referenced = constraint.pktable.relname
            tables = (table, referenced)
            lock = f"SHARE ROW EXCLUSIVE on {table} and {referenced} (brief, no scan)"
        self._transactional(
            Statement(sql, lock, "NOT VALID: existing rows are checked in a later step", tables)
        )
        self.validations.append(
            Statement(
                f"ALTER TABLE {_quote(table)} VALIDATE CONSTRAINT {_quote(conname)}",
                f"SHARE UPDATE EXCLUSIVE on {' and '.join(tables)} (reads and writes go on)",
                "VALIDATE in its own transaction",
                tables,
            )
        )

    def _unique(
        self, table: str, columns: list[str], index: str, _inline: bool, constraint: Any = None
    ) -> None:
        include = ""
        if constraint is not None and constraint.nulls_not_distinct:
            include = " NULLS NOT DISTINCT"
        column_list = ", ".join(_quote(c) for c in columns)
        self._concurrent(
            Statement(
                f"CREATE UNIQUE INDEX CONCURRENTLY {_quote(index)} ON {_quote(table)} "
                f"({column_list}){include}",
                f"SHARE UPDATE EXCLUSIVE on {table} (reads and writes go on)",
                "UNIQUE built as a concurrent unique index",
                (table,),
            ),
            index,
        )
        self._transactional(
            Statement(
                f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(index)} "
                f"UNIQUE USING INDEX {_quote(index)}",
                f"ACCESS EXCLUSIVE on {table} (brief: the index is already built)",
                "UNIQUE constraint from the concurrent index",
                (table,),
            )
        )


def _constraints_of(node: Any) -> list[Any]:
    constraints: list[Any] = []
    if isinstance(node, ast.CreateStmt):
        for element in node.tableElts or ():
            if isinstance(element, ast.Constraint):
                constraints.append(element)
            elif isinstance(element, ast.ColumnDef):
                constraints.extend(element.constraints or ())
    return constraints


def created_tables(statements: Iterable[str]) -> frozenset[str]:
    """The tables ``statements`` create (parse errors are the planner's to report)."""
    names: set[str] = set()
    for sql in statements:
        try:
            parsed = parse_sql(sql)
        except ParseError:
            continue
        for raw in parsed:
            node: Any = raw.stmt
            if isinstance(node, ast.CreateStmt):
                names.add(str(node.relation.relname))  # type: ignore[union-attr]
            elif isinstance(node, ast.CreateTableAsStmt):
                names.add(str(node.into.rel.relname))  # type: ignore[union-attr]
    return frozenset(names)


def plan_migration(
    file: MigrationFile,
    statements: list[str] | None,
    catalog: Catalog,
    acknowledged: dict[str, str],
    *,
    atomic: bool = True,
    opaque: Any = None,
    backwards: bool = False,
) -> MigrationPlan:
    """
    The steps of one migration.

    :param statements: its SQL in order (raw steps first, as Piccolo runs
        them); ``None`` when a raw Python step keeps its SQL out of sight,
        in which case ``opaque`` (the ``MigrationManager``) runs as one
        transactional step, unanalysed.
    :param catalog: the database before this migration.
    :param acknowledged: the migration's ``ACKNOWLEDGE_UNSAFE``.
    :param atomic: ``False`` when the migration asked for no transaction:
        each statement then commits on its own.
    :param backwards: the plan reverses the migration: same non-blocking
        rewrites, nothing refused, and its last step forgets the ledger row.
    """
    if statements is None:
        note = (
            "-- raw Python step(s) not shown: keep raw SQL in a module-level FORWARDS_SQL "
            "list (see conference/piccolo_migrations/README.md); this migration runs "
            "unanalysed, in one transaction"
        )
        step = Step(
            1, [Statement(note, "unknown", "unanalysed")], opaque=opaque, records_ledger=True
        )
        return MigrationPlan(file, [step], acknowledged=acknowledged, backwards=backwards)
    created = created_tables(statements)
    planner = _Planner(file, catalog, acknowledged, created, atomic, backwards)
    for sql in statements:
        planner.add(sql)
    planner._flush_validations()
    steps = planner.steps
    if steps and steps[-1].transactional and not steps[-1].waits_without_blocking and atomic:
        steps[-1].records_ledger = True
    else:
        steps.append(Step(len(steps) + 1, [], records_ledger=True))
    return MigrationPlan(
        file,
        steps,
        refusals=planner.refusals,
        created_tables=created,
        dropped_tables=frozenset(planner.dropped),
        acknowledged=acknowledged,
        backwards=backwards,
    )
