"""The Smart Agent's trusted keys (CCXLIC_AGENT_TRUSTED_KEYS): read once at start; a bad file stops it with the
variable named."""

from __future__ import annotations

from pathlib import Path

import pytest
from ccxlic_agent.settings import AgentSettings
from ccxlic_rules import codes
from ccxlic_runtime.settings import ConfigError, load_settings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def test_a_file_of_keys_is_read_into_each_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = [codes.public_pem(codes.load_key(codes.new_key())) for _ in range(2)]
    path = tmp_path / "authorities.pem"
    path.write_text("".join(keys))
    monkeypatch.setenv("CCXLIC_AGENT_TRUSTED_KEYS", str(path))
    assert load_settings(AgentSettings).trusted_keys == tuple(keys)
    monkeypatch.delenv("CCXLIC_AGENT_TRUSTED_KEYS")
    assert load_settings(AgentSettings).trusted_keys == ()


def _not_ed25519() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read"), ("hello", "no PEM public key"), ("EC", "not an Ed25519 key")],
)
def test_a_bad_file_names_the_variable_and_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "keys.pem"
    if content is not None:
        path.write_text(_not_ed25519() if content == "EC" else content)
    monkeypatch.setenv("CCXLIC_AGENT_TRUSTED_KEYS", str(path))
    with pytest.raises(ConfigError, match=f"CCXLIC_AGENT_TRUSTED_KEYS.*{says}"):
        load_settings(AgentSettings)
