"""Stage 3, fit: k-means over a ``BatchSource`` (k-means++ restarts, mini-batch steps, Lloyd
passes), the scores (silhouette and the other indices), the k sweep, the compared algorithms,
the saved model and the scikit-learn-compatible estimator.

Owns: ``fit_kmeans``, ``assign_rows``, ``sweep_matrix``, ``Model``, ``KMeans``.
May import: ``engine.errors``, ``engine.features``, ``engine.outputs``, ``kernels``; scikit-learn
only in ``compare`` and ``estimator``, which nothing on the CLI's start-up path imports
(``engine.KMeans`` is a lazy attribute of ``engine``).
"""
