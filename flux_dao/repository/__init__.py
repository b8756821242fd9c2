"""The only code that writes SQL: plans, the statement compiler, the generic repository, error translation."""

from flux_dao.repository.plans import BulkUpdatePlan, GroupedCountPlan, ListPlan, TimeRangePlan
from flux_dao.repository.repository import Catalog, ListResult, ResourceRepository

__all__ = (
    "BulkUpdatePlan",
    "Catalog",
    "GroupedCountPlan",
    "ListPlan",
    "ListResult",
    "ResourceRepository",
    "TimeRangePlan",
)
