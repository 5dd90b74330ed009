"""make bench's bare-Python delivery reference: it really POSTs each id once, signed, to the receiver."""

from __future__ import annotations

from bench import reference_delivery


def test_every_id_is_posted_once_and_the_rate_and_cpu_are_reported(redis_url, receiver):
    result = reference_delivery.run(redis_url, receiver.url, 40, threads=4)
    got = receiver.wait_for(40)
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(f"evt_{i}" for i in range(40))
    assert all(r.headers["webhook-signature"].startswith("v1,") for r in got)
    assert result["delivered"] == 40 and result["deliveries_per_s"] > 0 and result["cpu_ms_per_delivery"] > 0
