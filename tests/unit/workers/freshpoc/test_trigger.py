"""The trigger's polling schedule, and triggers serialised before it had one."""

from itertools import islice

from workers.freshpoc.trigger import ServiceJobTrigger, poll_delays


def test_polls_start_short_and_back_off_to_the_most():
    assert list(islice(poll_delays(0.2, 5.0), 8)) == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_a_fixed_schedule_is_first_equal_to_most():
    assert list(islice(poll_delays(5.0, 5.0), 3)) == [5.0, 5.0, 5.0]
    assert list(islice(poll_delays(2.0, 1.0), 2)) == [2.0, 2.0]  # never below the first


def test_a_trigger_serialised_before_the_backoff_keeps_its_fixed_interval():
    """A trigger row written before the upgrade has no max_poll_interval; the triggerer rebuilds it from its kwargs."""
    old = ServiceJobTrigger(http_conn_id="freshpoc_miner", job_id="miner-1", poll_interval=5.0, request_timeout=30.0)
    assert list(islice(poll_delays(old.poll_interval, old.max_poll_interval), 3)) == [5.0, 5.0, 5.0]
    again = ServiceJobTrigger(**old.serialize()[1])
    assert again.serialize() == old.serialize()
