"""Rendering a JSON-shaped result as ``json``, ``table`` (rich) or ``text`` (tab-separated).

``text`` follows the AWS CLI: a dict's scalar values on one tab-separated line, each
nested list on lines of its own prefixed with the key in capitals, and each nested dict as
one ``KEY<TAB>name<TAB>value`` line per entry (so map keys such as labels are kept).

Example::

    render({"secrets": [{"secretId": "db", "currentVersion": 2}]}, "text")
    # 'SECRETS\\tdb\\t2'
"""

from __future__ import annotations

import json
import shutil
from io import StringIO
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _is_rows(value: Any) -> bool:
    """A non-empty list of dicts: shown as rows."""
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


# --- json ----------------------------------------------------------------------------------


def render_json(form: Any) -> str:
    return json.dumps(form, indent=2, ensure_ascii=False)


# --- text ----------------------------------------------------------------------------------


def _text_scalar(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _text_line(label: str | None, values: list[Any]) -> str:
    cells = ([label] if label else []) + [_text_scalar(value) for value in values]
    return "\t".join(cells)


def _is_flat(value: Any) -> bool:
    return _is_scalar(value) or (isinstance(value, list) and all(_is_scalar(item) for item in value))


def _map_lines(form: dict[str, Any], label: str) -> list[str]:
    """A dict inside a dict (``labels``, ``metadata``, ``deletion``): one line per key."""
    lines = []
    for key, value in form.items():
        if _is_flat(value):
            lines.append(_text_line(label, [key, *(value if isinstance(value, list) else [value])]))
        else:
            lines.extend(_text_lines(value, str(key).upper()))
    return lines


def _text_lines(form: Any, label: str | None = None) -> list[str]:
    if _is_scalar(form):
        return [_text_line(label, [form])]
    if isinstance(form, list):
        if all(_is_scalar(item) for item in form):
            return [_text_line(label, form)] if form else []
        return [line for item in form for line in _text_lines(item, label)]
    scalars = [value for value in form.values() if _is_scalar(value)]
    lines = [_text_line(label, scalars)] if scalars else []
    for key, value in form.items():
        if isinstance(value, dict):
            lines.extend(_map_lines(value, str(key).upper()))
        elif not _is_scalar(value):
            lines.extend(_text_lines(value, str(key).upper()))
    return lines


def render_text(form: Any) -> str:
    return "\n".join(_text_lines(form))


# --- table ---------------------------------------------------------------------------------


def _cell(value: Any) -> Text:
    """A table cell; plain ``Text`` so values are never read as rich markup."""
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("true" if value else "false")
    if isinstance(value, list):
        if all(_is_scalar(item) for item in value):
            return Text(", ".join(str(_cell(item)) for item in value))
        return Text(json.dumps(value, ensure_ascii=False))
    if isinstance(value, dict):
        return Text("\n".join(f"{key}: {_cell(item)}" for key, item in value.items()))
    return Text(str(value))


def _rows_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    table = Table(title=title, box=box.SQUARE, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _key_value_table(items: dict[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, box=box.SQUARE, title_justify="left", show_header=False)
    table.add_column("key", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    for key, value in items.items():
        table.add_row(Text(str(key)), _cell(value))
    return table


def _tables(form: Any) -> list[RenderableType]:
    if _is_rows(form):
        return [_rows_table(form)]
    if isinstance(form, list):
        return [_rows_table([{"value": item} for item in form])] if form else []
    if not isinstance(form, dict):
        return [Text(str(_cell(form)))]
    simple = {key: value for key, value in form.items() if not _is_rows(value)}
    tables: list[RenderableType] = [_key_value_table(simple)] if simple else []
    tables.extend(_rows_table(value, title=key) for key, value in form.items() if _is_rows(value))
    return tables


def render_table(form: Any, width: int | None = None) -> str:
    """Lists become rows; a dict becomes key/value rows plus a table per list of objects."""
    buffer = StringIO()
    console = Console(file=buffer, width=width or shutil.get_terminal_size((120, 24)).columns,
                      color_system=None, highlight=False, markup=False, emoji=False)
    for renderable in _tables(form):
        console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def render(form: Any, output: str) -> str:
    """``form`` (JSON-shaped) in ``output`` format: ``json``, ``table`` or ``text``."""
    if output == "table":
        return render_table(form)
    if output == "text":
        return render_text(form)
    return render_json(form)
