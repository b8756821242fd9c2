"""Plans (what a request asks for, validated) and the compiler that turns them into SQL statements."""

from flux_dao.query.plans import BulkUpdatePlan, GroupedCountPlan, ListPlan, TimeRangePlan

__all__ = ("BulkUpdatePlan", "GroupedCountPlan", "ListPlan", "TimeRangePlan")
