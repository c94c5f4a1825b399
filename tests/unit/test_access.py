"""The access table is the one truth of who reads and writes what: the services' inputs, the local stack's users and
the ACLs all follow it, and it gives no program more than its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ccxlic_agent.app import INPUTS as AGENT_INPUTS
from ccxlic_alerting.app import INPUTS as ALERTING_INPUTS
from ccxlic_compliance.app import INPUTS as COMPLIANCE_INPUTS
from ccxlic_consumption.app import INPUTS as CONSUMPTION_INPUTS
from ccxlic_contract import TOPICS
from ccxlic_contract.access import PROGRAMS
from ccxlic_contract.topics import AGENT_COMMANDS, CONSUMPTION, DEAD_LETTER, topic_for
from ccxlic_runtime.kafka_acls import DESCRIBE, GROUP, LITERAL, PREFIXED, READ, TOPIC, WRITE, Grant, grants, users

ROOT = Path(__file__).resolve().parents[2]
USERS = {p: a.user for p, a in PROGRAMS.items()}


@pytest.mark.parametrize(
    ("program", "inputs"),
    [
        ("consumption", CONSUMPTION_INPUTS),
        ("compliance", COMPLIANCE_INPUTS),
        ("alerting", ALERTING_INPUTS),
        ("agent", AGENT_INPUTS),
    ],
)
def test_a_service_reads_what_the_table_lets_it_read(program: str, inputs: tuple[object, ...]) -> None:
    assert set(PROGRAMS[program].reads) == set(inputs)


def test_the_local_stack_makes_a_user_for_every_program_of_the_table() -> None:
    script = (ROOT / "deploy" / "stack.sh").read_text()
    listed = re.search(r"^KAFKA_PROGRAMS=\(([^)]*)\)", script, re.M)
    assert listed is not None and listed.group(1).split() == list(PROGRAMS)


def test_every_type_has_a_writer_and_every_topic_read_has_one() -> None:
    written = {t for a in PROGRAMS.values() for t in a.writes}
    assert {topic_for(type_) for t in TOPICS for type_ in t.types} <= written
    assert {t for a in PROGRAMS.values() for t in a.reads} <= written


def test_only_the_consumption_computer_writes_its_output_and_only_admin_tools_command() -> None:
    writers = {p for p, a in PROGRAMS.items() if CONSUMPTION in a.writes}
    assert writers == {"consumption"}
    assert {p for p, a in PROGRAMS.items() if AGENT_COMMANDS in a.writes} == {"cli", "console"}
    # every service that consumes can dead-letter (`ccxlic` and the console read the inputs only to replay them)
    assert all(DEAD_LETTER in a.writes for p, a in PROGRAMS.items() if a.reads and p not in ("cli", "console"))


def test_the_grants_are_the_table_with_the_prefix_and_nothing_else() -> None:
    granted = grants("p.", USERS)
    assert len(granted) == len(set(granted))
    for g in granted:
        program = g.principal.removeprefix("User:ccxlic-")
        access = PROGRAMS[program]
        if g.resource == GROUP:
            assert (g.name, g.operation, g.pattern) == (f"p.ccxlic-{program}", READ, PREFIXED)
            continue
        assert g.pattern == LITERAL
        assert g.resource == TOPIC and g.name.startswith("p.")
        topic = next(t for t in TOPICS if f"p.{t.name}" == g.name)
        assert g.operation in (READ, WRITE, DESCRIBE)
        assert g.operation != READ or topic in access.reads
        assert g.operation != WRITE or topic in access.writes
        assert g.operation != DESCRIBE or topic in access.topics
    assert Grant("User:ccxlic-publisher", TOPIC, "p.licensing.agent-commands", WRITE) not in granted
    assert str(Grant("User:ccxlic-cli", TOPIC, "p.licensing.clock", WRITE)) == (
        "User:ccxlic-cli may write topic p.licensing.clock"
    )


def test_a_program_s_user_is_its_own_variable_or_the_default() -> None:
    named = users({"CCXLIC_PUBLISHER_KAFKA_SASL_USERNAME": "cc-east-acd"})
    assert named["publisher"] == "cc-east-acd" and named["consumption"] == "ccxlic-consumption"
    assert any(g.principal == "User:cc-east-acd" for g in grants("", named))


def test_a_program_reads_its_own_kafka_user_before_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from ccxlic_compliance.settings import ComplianceSettings
    from ccxlic_runtime.settings import ConfigError, load_settings

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "shared")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "shared-pw")
    monkeypatch.setenv("CCXLIC_COMPLIANCE_KAFKA_SASL_USERNAME", "ccxlic-compliance")
    monkeypatch.setenv("CCXLIC_COMPLIANCE_KAFKA_SASL_PASSWORD", "own-pw")
    own = load_settings(ComplianceSettings)
    assert own.kafka_sasl_username == "ccxlic-compliance" and own.kafka_sasl_password is not None
    assert own.kafka_sasl_password.get_secret_value() == "own-pw"
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "CCXLIC_COMPLIANCE_KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match=r"needs CCXLIC_COMPLIANCE_KAFKA_SASL_USERNAME \(or KAFKA_SASL_USERNAME\)"):
        load_settings(ComplianceSettings)
