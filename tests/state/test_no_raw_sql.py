"""SQL lives in ``state/``: no module elsewhere holds a statement (found in its string constants with ``ast``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tradebot

PACKAGE = Path(tradebot.__file__).parent

# A statement as this code base writes them: an upper-case keyword first, or (lower case) the unmistakable
# forms. Docstrings are prose ("Select the ..."), not statements, and are skipped.
SQL = re.compile(r"^\s*(?:(?:SELECT|INSERT|UPDATE|DELETE|PRAGMA|CREATE|REPLACE|ALTER|DROP|WITH)\b"
                 r"|(?i:select\s[\s\S]*\sfrom\s|insert\s+(?:or\s+\w+\s+)?into\s|update\s+\w+\s+set\s|delete\s+from\s"
                 r"|pragma\s+\w+|create\s+(?:temp\s+|unique\s+)?(?:table|index|view|trigger)\s))")

ALLOWED: dict[str, str] = {}
"""Module (path under the package) -> why it may hold SQL. Empty: nothing outside ``state/`` needs to."""


def sql_constants(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
            and SQL.match(n.value)]


def test_the_detector_finds_statements_and_ignores_prose() -> None:
    found = sql_constants('"""Select the bars from the day."""\n'
                          'a = "SELECT 1 FROM t"\nb = f"SELECT * FROM {t} WHERE x"\nc = "pragma journal_mode=wal"\n'
                          'd = "create table t(x)"\ne = "Update the chart"\nf = "delete from outbox where id = 1"\n')
    assert sorted(line for line, _ in found) == [2, 3, 4, 5, 7]


def test_no_module_outside_state_holds_sql() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("state/") or rel in ALLOWED:
            continue
        offenders += [f"{rel}:{line}: {text.strip()[:70]!r}" for line, text in sql_constants(path.read_text())]
    assert not offenders, ("SQL outside tradebot/state (put it behind a function in state/queries.py or a "
                           "StateStore method):\n" + "\n".join(offenders))
