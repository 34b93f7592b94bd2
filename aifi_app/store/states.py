"""The states a study and a job move through, and which moves are allowed.

A study is the unit of receiving (one *episode* of a Study Instance UID: late instances
start a new episode); a job is one algorithm run on one study episode.
"""

from __future__ import annotations

from enum import StrEnum


class StudyState(StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"
    ROUTED = "routed"
    NO_MATCH = "no_match"
    RECORDED = "recorded"
    """Late instances kept under the ``record`` policy: shown, not processed."""


class JobState(StrEnum):
    QUEUED = "queued"
    PSEUDONYMISED = "pseudonymised"
    SUBMITTED = "submitted"
    RESULT_RECEIVED = "result_received"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OutputState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


FINISHED_JOB_STATES = frozenset(
    {JobState.DELIVERED, JobState.REJECTED, JobState.FAILED, JobState.CANCELLED}
)

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.PSEUDONYMISED, JobState.REJECTED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.PSEUDONYMISED: frozenset(
        {JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}
    ),
    JobState.SUBMITTED: frozenset(
        {JobState.RESULT_RECEIVED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}
    ),
    JobState.RESULT_RECEIVED: frozenset({JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED}),
    JobState.DELIVERED: frozenset({JobState.RESULT_RECEIVED}),
    JobState.REJECTED: frozenset({JobState.QUEUED}),
    JobState.FAILED: frozenset({JobState.QUEUED, JobState.RESULT_RECEIVED}),
    JobState.CANCELLED: frozenset({JobState.QUEUED}),
}
"""Allowed moves. Going back to ``queued`` is a retry; ``failed -> result_received`` retries
only the delivery of results that were already built; ``delivered -> result_received`` is
a person's "resend to PACS"."""
