"""The merchant settings schema, and the readers the services apply settings through."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from payhook_shared import merchant_settings
from payhook_shared.callbacks.base import validation_message

DOC = {
    "priority_rules": [{"event_type": "mpesa.stk_push", "status": "failed", "priority": "NORMAL"},
                       {"min_amount_minor": 500000, "priority": 0}],
    "retry": {"profile": "aggressive"},
    "notifications": {"payment_received": {"enabled": True, "recipients": ["books@shop.test"]},
                      "receipt": {"enabled": False, "fallback_email": "buyer@demo.test"}},
    "retention": {"raw_payload_days": 7, "events_days": 365},
    "c2b_validation": {"mode": "rules", "min_amount": "10", "max_amount": 150000, "account_pattern": "INV-[0-9]+",
                       "shortcodes": ["600966", 600967], "require_name": True, "fallback": "reject"},
}


def test_a_whole_document_loads_with_priorities_as_labels():
    loaded = merchant_settings.load(DOC)
    assert loaded["priority_rules"] == [{"event_type": "mpesa.stk_push", "status": "failed", "priority": "normal"},
                                        {"min_amount_minor": 500000, "priority": "urgent"}]
    assert loaded["retry"] == {"profile": "aggressive"} and loaded["retention"] == DOC["retention"]
    assert loaded["c2b_validation"] == {"mode": "rules", "min_amount": "10.00", "max_amount": "150000.00",
                                        "account_pattern": "INV-[0-9]+", "shortcodes": ["600966", "600967"],
                                        "require_name": True, "fallback": "reject"}
    assert merchant_settings.view(loaded) == loaded


@pytest.mark.parametrize("change, field", [
    ({"priority_rules": [{"event_type": "x"}]}, "priority_rules.0.priority"),
    ({"priority_rules": [{"status": "paid", "priority": "low"}]}, "priority_rules.0.status"),
    ({"priority_rules": [{"priority": "low"}] * 51}, "priority_rules"),
    ({"retry": {"profile": "eager"}}, "retry.profile"),
    ({"retry": {"schedule": [5, -1]}}, "retry.schedule.1"),
    ({"notifications": {"payment_received": {"enabled": "no"}}}, "notifications.payment_received.enabled"),
    ({"notifications": {"payment_failed": {"recipients": ["not-an-address"]}}},
     "notifications.payment_failed.recipients.0"),
    ({"notifications": {"receipt": {"recipients": ["a@b.test"]}}}, "notifications.receipt.recipients"),
    ({"notifications": {"sms": {"enabled": True}}}, "notifications.sms"),
    ({"retention": {"events_days": 0}}, "retention.events_days"),
    ({"retention": {"events_days": merchant_settings.MAX_RETENTION_DAYS + 1}}, "retention.events_days"),
    ({"retention": {"events_days": "30"}}, "retention.events_days"),
    ({"retention": {"raw_payload_days": 60, "events_days": 30}}, "retention.raw_payload_days"),
    ({"c2b_validation": {"mode": "reject_all"}}, "c2b_validation.mode"),
    ({"c2b_validation": {"mode": "forward"}}, "c2b_validation.forward_url"),
    ({"c2b_validation": {"forward_url": "ftp://shop.test/v"}}, "c2b_validation.forward_url"),
    ({"c2b_validation": {"forward_url": "http://127.0.0.1:8000/v"}}, "c2b_validation.forward_url"),
    ({"c2b_validation": {"forward_url": "http://[::ffff:169.254.169.254]/v"}}, "c2b_validation.forward_url"),
    ({"c2b_validation": {"forward_timeout": 7}}, "c2b_validation.forward_timeout"),
    ({"c2b_validation": {"forward_timeout": True}}, "c2b_validation.forward_timeout"),
    ({"c2b_validation": {"min_amount": "1.001"}}, "c2b_validation.min_amount"),
    ({"c2b_validation": {"min_amount": 20, "max_amount": 10}}, "c2b_validation.min_amount"),
    ({"c2b_validation": {"account_pattern": "INV-("}}, "c2b_validation.account_pattern"),
    ({"c2b_validation": {"shortcodes": ["6006x"]}}, "c2b_validation.shortcodes.0"),
    ({"c2b_validation": {"require_name": "yes"}}, "c2b_validation.require_name"),
    ({"c2b_validation": {"fallback": "maybe"}}, "c2b_validation.fallback"),
])
def test_the_schema_refuses_naming_the_field(change, field):
    with pytest.raises(ValidationError) as caught:
        merchant_settings.load(change)
    assert [line.split(":")[0] for line in validation_message(caught.value.messages)] == [field]


def test_a_forward_url_on_an_allowlisted_network_is_accepted():
    change = {"c2b_validation": {"mode": "forward", "forward_url": "http://127.0.0.1:8000/v"}}
    assert merchant_settings.load(change, allow=("127.0.0.0/8",)) == change
    # Allowlisting the IPv4 network does not allow its NAT64 form: the connection would go elsewhere.
    with pytest.raises(ValidationError):
        merchant_settings.load({"c2b_validation": {"forward_url": "http://[64:ff9b::7f00:1]/v"}}, allow=("127.0.0.0/8",))


def test_readers_leave_out_what_the_schema_refuses():
    stored = {"priority_rules": [{"priority": "asap"}, {"status": "failed", "priority": "low"}, "junk"],
              "retry": {"profile": "eager", "schedule": [1, 2]},
              "notifications": {"payment_received": {"enabled": "yes", "recipients": ["a@shop.test"]},
                                "payment_failed": "on"},
              "retention": {"raw_payload_days": 90, "events_days": 30}}
    assert merchant_settings.priority_rules(stored) == [{"status": "failed", "priority": "low"}]
    assert merchant_settings.retry(stored) == {"schedule": [1.0, 2.0]}
    assert merchant_settings.notifications(stored) == {"payment_received": {"recipients": ["a@shop.test"]}}
    assert merchant_settings.retention(stored) == {"events_days": 30}  # raw payloads cannot outlive their events
    assert merchant_settings.view(None) == {"priority_rules": [], "retry": {}, "notifications": {}, "retention": {},
                             "c2b_validation": {}}


@pytest.mark.parametrize("retry, expected", [
    ({}, (5.0, 300.0)),
    ({"profile": "standard"}, (5.0, 300.0)),
    ({"profile": "fast"}, (2, 4, 8)),
    ({"profile": "gentle"}, merchant_settings.RETRY_PROFILES["gentle"]),
    ({"profile": "aggressive"}, merchant_settings.RETRY_PROFILES["aggressive"]),
    ({"profile": "gentle", "schedule": [1, 1]}, (1, 1)),
])
def test_retry_profiles_are_real_schedules(retry, expected):
    assert merchant_settings.retry_schedule({"retry": retry}, (5.0, 300.0)) == tuple(expected)


def test_profiles_differ_as_described():
    aggressive, gentle = merchant_settings.RETRY_PROFILES["aggressive"], merchant_settings.RETRY_PROFILES["gentle"]
    standard = (5, 300, 1800, 7200, 18000, 36000, 36000)  # the delivery-worker's default RETRY_SCHEDULE
    assert len(aggressive) > len(standard) > len(gentle)
    assert aggressive[0] <= standard[0] < gentle[0]
    assert sum(gentle) > sum(standard)


def test_merged_replaces_given_sections_and_keeps_the_rest():
    stored = {"retry": {"profile": "fast"}, "retention": {"events_days": 7}, "c2b_validation": {"mode": "rules"}}
    merged = merchant_settings.merged(stored, {"retry": {"profile": "gentle"}, "retention": None, "priority_rules": []})
    assert merged == {"retry": {"profile": "gentle"}, "c2b_validation": {"mode": "rules"}}
    assert stored["retry"] == {"profile": "fast"}  # a new document, never changed in place
