"""ioreactor's tools: the course's labs, its server models and the benchmarks.

Installed with ``pip install 'ioreactor[tools]'`` (rich and matplotlib come with it);
the framework itself, :mod:`ioreactor`, never imports this package.

``lab``     experiments on the real kernel, one module per concept of the course
``models``  the course's server models (fork, threads, pool, reactors, io_uring)
``bench``   side-by-side benchmarks against the peer servers
``cli``     the ``ioreactor lab|bench|model|echo-client`` commands
"""
