"""Restoration priorities, project screening and fiches de préconisations (the observatory's operational core).

* :mod:`.ranking` — rank corridors to restore / create and rupture sites by connectivity gain, cost, conflict with
  planned projects and synergy with managed sectors (``priorities:`` section of the territory YAML);
* :mod:`.screening` — "porter à connaissance": what a planned project touches and the connectivity it costs;
* :mod:`.sheets` — the French one-page sheets (HTML + PDF): screening sheet and one fiche per sous-trame;
* :mod:`.stage` — the pipeline hook (after the indicators) and the store layout of screenings.
"""
from __future__ import annotations

from .config import fiches_config, priorities_config, screening_config
from .ranking import PRIORITY_COLUMNS, compute_priorities, rupture_sites, score_and_rank, sous_trame_networks

__all__ = ["PRIORITY_COLUMNS", "compute_priorities", "fiches_config", "priorities_config", "rupture_sites",
           "score_and_rank", "screening_config", "sous_trame_networks"]
