"""Experiments on the real kernel, one module per concept of the course.

Each module runs its experiment as plain functions returning typed results, and turns
them into a :class:`~ioreactor_tools.lab.report.LabReport` (what was observed, next to what the
course predicts); ``ioreactor lab NAME`` prints that report.
"""
