"""Shared test helpers, imported by ``tests/conftest.py`` and the test modules (``tests/`` is on ``sys.path``).

* :mod:`helpers.servers`: free ports, the real local servers the integration tests start (moto S3, MapServer WFS),
  a static file server, and the fixture modules of ``tests/fixtures/`` loaded once by path.
"""
