"""benchmarks against the peer servers, side by side

``ioreactor bench NAME``: one module per benchmark, each a thin CLI over its engine in
:mod:`ioreactor_tools.bench`.
"""
