"""Runs tasks: a small Protocol (base), a scripted fake, and the real Linux executor."""
