"""The PM QoS request `eigentone play` and the real-time benches hold (engine.realtime.cpu_wakeup_latency): the
kernel's aggregate CPU wake-up latency is the requested value while the block runs and back after it; where the
request cannot be made, nothing fails and the description says so."""

import os
import struct

import pytest

from engine.realtime import CPU_LATENCY_DEVICE, cpu_wakeup_latency, wakeup_latency_unless


def _current_latency_us() -> int:
    fd = os.open(CPU_LATENCY_DEVICE, os.O_RDONLY)
    try:
        return struct.unpack("i", os.read(fd, 4))[0]
    finally:
        os.close(fd)


needs_device = pytest.mark.skipif(not os.access(CPU_LATENCY_DEVICE, os.W_OK),
                                  reason=f"{CPU_LATENCY_DEVICE} not writable here (not root, or not Linux)")


@needs_device
def test_the_request_is_held_while_running_and_dropped_after():
    before = _current_latency_us()
    assert before > 0, "another process already holds a 0 us request: the test could not see ours"
    with cpu_wakeup_latency(0) as described:
        assert _current_latency_us() == 0
        assert "held at 0 us" in described
    assert _current_latency_us() == before


@needs_device
def test_the_request_is_dropped_on_error():
    before = _current_latency_us()
    with pytest.raises(RuntimeError), cpu_wakeup_latency(0):
        raise RuntimeError("the player failed")
    assert _current_latency_us() == before


@needs_device
def test_cpu_idle_requests_nothing():
    before = _current_latency_us()
    with wakeup_latency_unless(True) as described:
        assert _current_latency_us() == before
    assert "not requested" in described


def test_no_device_no_request(tmp_path):
    with cpu_wakeup_latency(0, device=str(tmp_path / "missing")) as described:
        assert described.startswith("CPU wake-up latency: not requested")
        assert "missing" in described
