"""A run's full passes on a Dask cluster (``segment run --cluster``), with the local run's answer.

Owns: connecting to a cluster (``connect``: ``local[:N]`` starts a ``LocalCluster`` of N worker
processes, ``tcp://HOST:PORT`` joins a running scheduler, or a ``distributed.Client`` given to the
Python API), the feature pass and the fit's rows as blocks held on the workers
(``source.ClusterSource``, a ``BatchSource``), and the final pass on the workers (``final``).

The client keeps everything that is not a full pass: the feature statistics, the k-means++
restarts, the mini-batch steps and the Lloyd iterations on samples. Workers map one task per
block (``client.submit`` over explicit blocks, every size passed in, nothing read from a module
global on the worker), and the client reduces their partial results in block order, as the local
loop does, so the bits are the same.

Dask is imported at the top of this package's modules, never by ``engine.api`` at start-up: the
API imports them inside its functions, only with ``--cluster``.

May import: ``input``, ``features``, ``fit``, ``insight``, ``outputs``, ``options``, ``progress``, ``streaming``.
"""
