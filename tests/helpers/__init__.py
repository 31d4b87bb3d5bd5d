"""Shared test helpers, imported by ``tests/conftest.py`` and the test modules (``tests/`` is on ``sys.path``).

* :mod:`helpers.servers`: free ports, the real local servers the integration tests start (moto S3, MapServer WFS),
  a static file server, and the fixture modules of ``tests/fixtures/`` loaded once by path.
* :mod:`helpers.airflow_run`: end-to-end DAG runs through real Airflow (a throw-away SQLite metadata DB, runs through
  ``scripts/run_dag.py``, the demo's runner) and the checks of their outcome (task states, clean log).
* :mod:`helpers.airflow_stack`: the production-like Airflow stack of ``.ci/stack.sh`` (its env file, REST API client).
* :mod:`helpers.chromium`: headless Chromium over the DevTools protocol (browser tests, screenshots).
* :mod:`helpers.indicators_scene`, :mod:`helpers.layers_scene`, :mod:`helpers.priorities_scene`: hand-built scenes
  whose answer is known, for the indicator, layer and priority tests.
* :mod:`helpers.release_outputs`: fake stage outputs and a territory to publish releases from.
"""
