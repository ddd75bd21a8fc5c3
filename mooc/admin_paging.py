"""Admin lists over tables of millions of rows (the delivery ledger): counted by estimate."""

import json

from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# Below this, the estimate is replaced by an exact count: cheap, and a small list's pages must add up.
EXACT_BELOW = 10_000


class EstimatedCountPaginator(Paginator):
    """On PostgreSQL, the number of rows the planner expects (EXPLAIN), rather than COUNT(*) over
    a million rows on every page view; an exact count when the estimate is small, and elsewhere.
    The page links are then approximate for large lists, which the changelist says."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return super().count
        try:
            sql, params = queryset.order_by().query.sql_with_params()
        except EmptyResultSet:  # a filter that can match nothing (an address no learner has): no SQL to explain
            return 0
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        estimate = int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
        return super().count if estimate < EXACT_BELOW else estimate
