"""Activation-memory planning: assign every activation buffer an offset in one arena."""

from mcuc.memory.buffers import (
    ARENA_ALIGN,
    Buffer,
    Plan,
    PlanError,
    live_at,
    lower_bound,
    usage_timeline,
)
from mcuc.memory.exact import SearchStats, search_exact
from mcuc.memory.planner import (
    STRATEGIES,
    plan,
    plan_exact,
    plan_greedy_by_breadth,
    plan_greedy_by_size,
)
from mcuc.memory.validate import validate

__all__ = [
    "ARENA_ALIGN",
    "STRATEGIES",
    "Buffer",
    "Plan",
    "PlanError",
    "SearchStats",
    "live_at",
    "lower_bound",
    "plan",
    "plan_exact",
    "plan_greedy_by_breadth",
    "plan_greedy_by_size",
    "search_exact",
    "usage_timeline",
    "validate",
]
