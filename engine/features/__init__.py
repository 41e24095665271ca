"""Stage 2, features: the TOML feature spec and its business columns, and the build of the
scaled float32 matrix from an ``Input`` (missing values, clipping, log1p, one-hot, scaling), whole
or block by block (``stream``).

Owns: ``FeatureSpec``, ``Business``, ``build_features``, ``FeatureData``, the built-in specs.
May import: ``engine.errors``, ``engine.input``, ``kernels``.
"""
