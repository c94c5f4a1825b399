"""What ends each cause of enforcement (ccxlic_rules.exits), as /provisioning, `ccxlic status` and the console say it."""

from __future__ import annotations

from ccxlic_rules.exits import attention, exits


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


def test_attention_names_the_exit_a_breach_the_ova_limit_and_a_missing_license() -> None:
    entry = {
        "usage": {
            "in_use": {"standard": 45, "premium": 6, "ivr_ports": 0},
            "breach": {"standard": 1, "premium": 0, "ivr_ports": 0},
            "hard_limit": "reservation",
            "max_agents": 300,
        },
        "compliance": {
            "enforcement": {"active": True, "reasons": ["evaluation_expired"]},
            "missing_licenses": ["warm_standby"],
        },
    }
    got = attention(entry)
    assert got[0].startswith("to leave enforcement (evaluation_expired): register")
    assert "over the reservation: standard +1 (a breach)" in got
    assert "OVA limit: 51 of 300 agents signed in" in got
    assert got[-1].startswith("no Warm Standby license")
    assert attention({"usage": None, "compliance": None}) == []
