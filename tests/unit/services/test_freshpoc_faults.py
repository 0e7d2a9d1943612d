import pytest

from services.freshpoc.faults import FaultPlan, Faults


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fail_n_times_then_pass():
    faults = Faults()
    faults.set(FaultPlan(fail_503_times=2))
    answers = [faults.on_request()[1] for _ in range(3)]
    assert [a and a[0] for a in answers] == [503, 503, None]
    assert faults.describe()["fail_503_left"] == 0


def test_reject_400_carries_the_message_and_delays_apply():
    faults = Faults()
    faults.set(FaultPlan(reject_400="no thanks", response_delay_s=1.5, job_delay_s=7))
    assert faults.on_request() == (1.5, (400, "no thanks"))
    assert faults.job_delay_s() == 7


def test_a_plan_expires_after_its_ttl():
    clock = Clock()
    faults = Faults(clock)
    faults.set(FaultPlan(fail_503_times=5, ttl_s=60))
    clock.now += 61
    assert faults.on_request() == (0.0, None) and faults.describe() is None and faults.job_delay_s() == 0


def test_a_plan_cannot_live_longer_than_an_hour():
    with pytest.raises(ValueError, match="ttl_s"):
        Faults().set(FaultPlan(ttl_s=7200))


def test_clear_removes_the_plan():
    faults = Faults()
    faults.set(FaultPlan(reject_400="x"))
    faults.clear()
    assert faults.on_request() == (0.0, None)
