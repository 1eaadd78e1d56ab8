"""Lighthouse: the composition root (config, app factory, console command)."""
