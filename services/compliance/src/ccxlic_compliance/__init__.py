"""Compliance: the licensing authority's state per product instance, from usage, entitlements, lifecycle and time."""
