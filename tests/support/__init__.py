"""Helpers shared by several test folders (one copy each, not one per folder)."""
