"""`ioreactor lab ...`: one module per experiment."""
