"""Newest-first pages of a table, by `?limit=&before=<id>`: the same for every list in the API and pages."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import select

from webapp.errors import BadRequest
from webapp.extensions import db

PAGE_SIZE = 50


def newest_first(model: Any, *where: Any) -> tuple[list[Any], int | None]:
    """(rows, the `before` of the next page or None), of the rows matching every condition in `where`."""
    try:
        limit = min(max(int(request.args.get("limit", PAGE_SIZE)), 1), 500)
        before = int(request.args["before"]) if request.args.get("before") else None
    except ValueError:
        raise BadRequest("limit and before must be whole numbers.", code="invalid_query") from None
    query = select(model).where(*where).order_by(model.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(model.id < before)
    rows = list(db.session.scalars(query))
    next_before = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_before
