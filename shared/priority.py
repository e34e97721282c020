"""Job priorities, and how they map onto the Redis broker's priority lists.

kombu's Redis transport keeps one list per priority step (``queue``, ``queue:5``, ``queue:9`` with ``sep: ":"``)
and, unlike RabbitMQ, treats a LOWER number as a HIGHER priority; a message sent without a priority lands in the
top list. So every send of a job message carries ``broker_priority(job.priority)``, and anything that counts the
queue depth sums every list of ``broker_queue_lists``.
"""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for the most urgent: the order work runs in, in the broker and inside a worker."""
        return _RANKS[self]

    def allowed_under(self, maximum: Priority) -> bool:
        """True when a key whose highest allowed priority is ``maximum`` may submit at this priority."""
        return self.rank >= maximum.rank


_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}

BROKER_PRIORITY_STEPS = (0, 5, 9)
"""kombu ``priority_steps``: one Redis list per step."""

BROKER_SEP = ":"
"""kombu ``sep``: the lists are named ``<queue>``, ``<queue>:5`` and ``<queue>:9``."""


def broker_priority(priority: Priority) -> int:
    """The number to send with a job's message (0 = the top list on Redis)."""
    return BROKER_PRIORITY_STEPS[priority.rank]


def broker_queue_lists(queue: str) -> list[str]:
    """Every Redis list that holds ``queue``'s messages, most urgent first (sum their lengths for the depth)."""
    return [queue if step == 0 else f"{queue}{BROKER_SEP}{step}" for step in BROKER_PRIORITY_STEPS]
