"""The seat pool arithmetic, one function for every service.

Premium seats that are not in use cover Standard demand. With P, S entitled and p, s in use:

| quantity          | formula                          |
|-------------------|----------------------------------|
| premium deficit   | max(0, p - P)                    |
| standard deficit  | max(0, s - S - max(0, P - p))    |
| premium headroom  | max(0, P - p - max(0, s - S))    |
| standard headroom | max(0, S + max(0, P - p) - s)    |
| IVR deficit       | max(0, ivr_in_use - ivr_entitled)|

No entitlement (None) means evaluation: unlimited, no deficit, headroom None.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entitlement:
    standard: int
    premium: int
    ivr_ports: int


@dataclass(frozen=True, slots=True)
class Usage:
    standard: int
    premium: int
    ivr_ports: int = 0


@dataclass(frozen=True, slots=True)
class Amounts:
    standard: int
    premium: int
    ivr_ports: int


@dataclass(frozen=True, slots=True)
class Room:
    """Headroom; None means unlimited."""

    standard: int | None
    premium: int | None
    ivr_ports: int | None


NO_DEFICIT = Amounts(0, 0, 0)


def deficit(used: Usage, entitled: Entitlement | None) -> Amounts:
    """Seats and ports in use beyond the entitlement, per license."""
    if entitled is None:
        return NO_DEFICIT
    p, s, big_p, big_s = used.premium, used.standard, entitled.premium, entitled.standard
    return Amounts(
        standard=max(0, s - big_s - max(0, big_p - p)),
        premium=max(0, p - big_p),
        ivr_ports=max(0, used.ivr_ports - entitled.ivr_ports),
    )


def headroom(used: Usage, entitled: Entitlement | None) -> Room:
    """Seats and ports still free, per license."""
    if entitled is None:
        return Room(None, None, None)
    p, s, big_p, big_s = used.premium, used.standard, entitled.premium, entitled.standard
    return Room(
        standard=max(0, big_s + max(0, big_p - p) - s),
        premium=max(0, big_p - p - max(0, s - big_s)),
        ivr_ports=max(0, entitled.ivr_ports - used.ivr_ports),
    )


def over(amounts: Amounts) -> bool:
    return amounts.standard > 0 or amounts.premium > 0 or amounts.ivr_ports > 0
