"""The ccxlic command."""
