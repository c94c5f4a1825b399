"""pytest plugin for ccx-licensing tests (see plugin.py)."""
