"""The ccx-licensing event contract: CloudEvents 1.0 models, one codec, the topic registry."""

from ccxlic_contract.codec import (
    EVENT_ADAPTER,
    STRUCTURED_CONTENT_TYPE,
    ContractError,
    Event,
    decode,
    decode_message,
    encode,
)
from ccxlic_contract.topics import TOPICS, Topic, key_for, topic_for

__all__ = [
    "EVENT_ADAPTER",
    "STRUCTURED_CONTENT_TYPE",
    "TOPICS",
    "ContractError",
    "Event",
    "Topic",
    "decode",
    "decode_message",
    "encode",
    "key_for",
    "topic_for",
]
