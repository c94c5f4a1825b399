"""What ends each cause of enforcement (ccxlic_rules.exits), as /provisioning, `ccxlic status` and the console say it."""

from __future__ import annotations

from ccxlic_rules.exits import exits


def test_each_cause_has_its_own_exit_and_a_purchase_names_what_it_must_cover() -> None:
    view = {
        "enforcement": {"active": True, "reasons": ["authorization_expired", "out_of_compliance_expired"]},
        "required": {"standard": 40, "premium": 12, "ivr_ports": 20},
    }
    got = exits(view)
    assert [(x["cause"], x["action"]) for x in got] == [
        ("authorization_expired", "renew_authorization"),
        ("out_of_compliance_expired", "purchase"),
    ]
    assert "Standard 40, Premium 12, IVR ports 20" in got[1]["needed"]
    assert "does not end it" in got[0]["needed"]


def test_evaluation_expiry_ends_by_registering_and_no_enforcement_needs_nothing() -> None:
    assert exits({"enforcement": {"active": True, "reasons": ["evaluation_expired"]}})[0]["action"] == "register"
    assert exits({"enforcement": {"active": False, "reasons": []}}) == []
