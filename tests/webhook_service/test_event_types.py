"""GET /v1/event-types: the event catalog, each example valid against its own schema."""

from __future__ import annotations

import jsonschema
import pytest

from factories import api_key
from payhook_shared import catalog, operational
from payhook_shared.callbacks import mpesa


def test_the_catalog_lists_every_type_with_a_schema_and_a_valid_example(client, store):
    assert client.get("/v1/event-types").status_code == 401
    listed = client.get("/v1/event-types", headers=api_key(store)).get_json()["data"]
    types = {(e["type"], e["provider"]) for e in listed}
    for kind in (mpesa.STK_PUSH, mpesa.C2B_VALIDATION, mpesa.C2B_CONFIRMATION, mpesa.B2C, mpesa.B2B,
                 mpesa.REVERSAL, mpesa.TRANSACTION_STATUS, mpesa.ACCOUNT_BALANCE):
        assert (kind, "mpesa") in types
    assert {("*", "api"), ("stripe.*", "stripe"), ("payhook.test", "payhook")} <= types
    assert {(t, "payhook") for t in operational.TYPES} <= types
    assert ("payhook.callback.quarantined", "payhook") not in types  # not emitted yet
    for entry in listed:
        assert entry["description"]
        jsonschema.Draft202012Validator(entry["schema"], format_checker=jsonschema.FormatChecker()).validate(
            entry["example"]["data"])
    assert all(e["opt_in"] for e in listed if e["type"].startswith("payhook.endpoint"))


def test_a_body_is_found_by_its_exact_type_before_its_family():
    assert catalog.entry_for("stripe.charge.refunded", "stripe").type == "stripe.charge.refunded"
    assert catalog.entry_for("stripe.customer.created", "stripe").type == "stripe.*"
    assert catalog.entry_for("shop.payment", "hmac").provider == "hmac"
    with pytest.raises(catalog.UnknownType):
        catalog.entry_for("mpesa.unheard_of", "mpesa")


def test_every_example_type_names_one_entry():
    examples = [entry.example_type for entry in catalog.ENTRIES]
    assert len(examples) == len(set(examples))
    for entry in catalog.ENTRIES:
        assert catalog.by_example_type(entry.example_type) is entry
