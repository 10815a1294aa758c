"""experiments on the real kernel, one per course concept

``ioreactor lab NAME``: one module per experiment, each a thin CLI over its engine in
:mod:`ioreactor_tools.lab`.
"""
