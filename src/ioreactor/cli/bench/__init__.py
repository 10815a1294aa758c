"""`ioreactor bench ...`: one module per benchmark."""
