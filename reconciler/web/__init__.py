"""Static assets of the dashboard served at /ui/ (data only, no build step)."""
