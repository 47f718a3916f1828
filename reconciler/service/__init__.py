"""The running process: the loop (loop.py), its control API (control.py), the data dir lock and
signals (process.py)."""
