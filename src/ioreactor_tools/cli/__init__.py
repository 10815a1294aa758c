"""The tools' commands, added to ``ioreactor`` through the ``ioreactor.commands`` entry
points (see :mod:`ioreactor.cli`): ``lab``, ``bench``, ``model`` and ``echo-client``."""
