from datetime import UTC, datetime, timedelta

from promptforge.domain.records import ClientState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_queue_keeps_upload_order_whatever_order_events_come_in() -> None:
    c = ClientState("c", "active")
    for job, secs in [("third", 3), ("first", 1), ("second", 2), ("also-second", 2)]:
        c = c.enqueue(job, T0 + timedelta(seconds=secs))
    assert [w.job_id for w in c.pending] == ["first", "also-second", "second", "third"]


def test_promote_hands_the_slot_to_the_head_and_frees_it_when_empty() -> None:
    c = ClientState("c", "a").enqueue("b", T0).enqueue("c2", T0 + timedelta(seconds=1))
    c = c.promote()
    assert (c.active_job_id, [w.job_id for w in c.pending]) == ("b", ["c2"])
    c = c.promote().promote()
    assert c.active_job_id is None and c.pending == ()


def test_a_job_can_leave_the_queue() -> None:
    c = ClientState("c", "a").enqueue("b", T0).enqueue("x", T0)
    assert [w.job_id for w in c.without("b").pending] == ["x"]
