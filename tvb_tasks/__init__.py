"""TVB observatory pipeline library: sources → validate → layers → indicators → publish.

Plain Python (no Airflow import): the CLI (`tvb`) and the Airflow DAGs both call these functions.
"""
__version__ = "0.1.0"
