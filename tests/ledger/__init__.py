"""Ledger tests: real files in tmp_path, real processes: what is proven is a file system's behaviour."""
