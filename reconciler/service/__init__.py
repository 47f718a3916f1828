"""The running process: the loop (loop.py; a pass in passes.py, its scan in scans.py, exits in
exits.py, deadlines in deadlines.py), its control API (control.py), the data dir lock and
signals (process.py)."""
