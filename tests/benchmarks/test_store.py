"""make bench-store's plan check: which plans read a table whole at 1,000,000 events."""

from __future__ import annotations

from bench.store import _whole_reads


def _scan(node: str, table: str, **extra) -> dict:
    return {"Node Type": node, "Relation Name": table, **extra}


def test_a_sequential_scan_of_a_big_table_is_found_under_any_node():
    plan = {"Node Type": "Limit", "Plans": [{"Node Type": "Nested Loop", "Plans": [
        _scan("Index Scan", "deliveries", **{"Index Name": "ix_deliveries_event_id", "Index Cond": "(x = y)"}),
        _scan("Seq Scan", "events")]}]}
    assert _whole_reads(plan) == ["events"]


def test_the_quarantine_and_the_replays_are_checked_too():
    assert _whole_reads(_scan("Seq Scan", "quarantined_callbacks")) == ["quarantined_callbacks"]
    assert _whole_reads(_scan("Seq Scan", "replays")) == ["replays"]


def test_an_index_walked_without_a_condition_is_whole_unless_a_limit_stops_it():
    walk = _scan("Index Scan", "events", **{"Index Name": "events_pkey"})
    assert _whole_reads(walk) == ["events (whole index events_pkey)"]
    assert _whole_reads({"Node Type": "Limit", "Plans": [walk]}) == []


def test_small_tables_may_be_scanned():
    assert _whole_reads(_scan("Seq Scan", "merchants")) == []
