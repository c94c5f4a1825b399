"""Pure licensing rules shared by every service: Flex classification and the seat pool arithmetic."""

from ccxlic_rules.classify import classify
from ccxlic_rules.intervals import interval_start
from ccxlic_rules.pool import Entitlement, Usage, deficit, headroom

__all__ = ["Entitlement", "Usage", "classify", "deficit", "headroom", "interval_start"]
