"""The administration console (aiohttp, HTML rendered on the server)."""
