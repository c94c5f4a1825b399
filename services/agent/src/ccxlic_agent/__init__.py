"""The Smart Agent (README "Smart Agent")."""
