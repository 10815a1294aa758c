"""Helpers shared by the test suites: ``from support.<module> import ...``."""
