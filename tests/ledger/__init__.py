"""Ledger tests: real files in tmp_path, real processes (STYLE §4)."""
