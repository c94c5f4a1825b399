"""The licensing authority: an SSM-compatible stand-in (README "Licensing authority")."""
