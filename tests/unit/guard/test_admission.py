import pytest

from rtserve.errors import OverloadedError
from rtserve.guard.admission import EXPECTED_WAIT, QUEUE_FULL, AdmissionController, QueueState


def state(queued=0, running=1, concurrency=1, batch=1):
    return QueueState(queued, queued, running, concurrency, batch)


def test_an_idle_model_admits_anything():
    admission = AdmissionController(max_queue=0)
    admission.observe(10.0)
    admission.admit(state(running=0), 1, remaining=0.001)
    assert admission.admitted == 1


def test_a_full_queue_sheds_with_a_retry_after_and_is_counted():
    admission = AdmissionController(max_queue=2)
    admission.observe(0.5)
    admission.admit(state(queued=1), 1, remaining=30)
    with pytest.raises(
        OverloadedError, match="queue is full \\(2 requests waiting, limit 2\\)"
    ) as info:
        admission.admit(state(queued=2), 1, remaining=30)
    assert info.value.reason == QUEUE_FULL
    assert info.value.retry_after >= 1
    assert admission.rejections == {QUEUE_FULL: 1}


def test_a_wait_longer_than_the_deadline_sheds():
    admission = AdmissionController(max_queue=100)
    admission.observe(0.1)  # 4 queued batches of 0.1 s ahead: ~0.55 s
    admission.admit(state(queued=4), 1, remaining=1.0)
    with pytest.raises(OverloadedError, match="expected wait of 550 ms exceeds") as info:
        admission.admit(state(queued=4), 1, remaining=0.3)
    assert info.value.reason == EXPECTED_WAIT
    assert admission.rejections == {EXPECTED_WAIT: 1}


def test_concurrency_and_batching_shorten_the_expected_wait():
    admission = AdmissionController(max_queue=100)
    admission.observe(0.1)
    serial = admission.expected_wait(state(queued=8), 1)
    parallel = admission.expected_wait(state(queued=8, running=4, concurrency=4), 1)
    batched = admission.expected_wait(state(queued=8, batch=8), 1)
    assert parallel < serial
    assert batched < serial


def test_batch_times_are_a_moving_average():
    admission = AdmissionController(max_queue=1, smoothing=0.5)
    admission.observe(1.0)
    admission.observe(3.0)
    assert admission.batch_seconds == pytest.approx(2.0)
