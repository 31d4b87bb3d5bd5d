"""Benchmark of the graph connectivity indicators (tvb_tasks.indicators.connectivity.analyse_network).

Graph: seeded RNG, N reservoirs at random points in a square landscape whose side grows with sqrt(N) (constant
density, as a larger territory), areas uniform in [1, 50) ha, each reservoir linked to its 3 nearest neighbours
(a sparse, planar-like graph as the layers stage produces), link distance = Euclidean distance. The dispersal
distance is 3 mean link lengths, p = 0.05 there (Graphab convention).

Printed per N: PC / EC(PC) / IIC and the dPC of every node and every link, total seconds (one run each, after a warm
-up on a small graph). The former implementation (networkx Floyd–Warshall per removed node) grew as ≈ n^3.6 and took
27 s at 400 nodes on this machine.

Usage: python bench/connectivity.py [--sizes 100,400,1600] [--seed 1] [--min-probability 1e-6]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from tvb_tasks.indicators.connectivity import analyse_network


def random_network(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(nodes, links, dispersal distance) of a random landscape of ``n`` reservoirs (1 reservoir per km²)."""
    rng = np.random.default_rng(seed)
    side = 1000.0 * np.sqrt(n)
    xy = rng.uniform(0, side, (n, 2))
    nodes = pd.DataFrame({"id": [f"R{i:05d}" for i in range(n)], "area_ha": rng.uniform(1, 50, n)})
    dist, idx = cKDTree(xy).query(xy, k=4)
    pairs = {tuple(sorted((i, int(j)))): float(d) for i in range(n) for d, j in zip(dist[i, 1:], idx[i, 1:])}
    links = pd.DataFrame([{"from_id": f"R{a:05d}", "to_id": f"R{b:05d}", "distance": d}
                          for (a, b), d in pairs.items()])
    return nodes, links, 3 * float(links["distance"].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,400,1600")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-probability", type=float, default=1e-6,
                        help="p* below which a pair counts as unconnected (YAML indicators.connectivity)")
    args = parser.parse_args()
    nodes, links, d = random_network(30, args.seed)
    analyse_network(nodes, links, landscape_area_ha=1e4, distance_threshold=d, probability_at_threshold=0.05)
    print(f"{'nodes':>6} {'links':>6} {'seconds':>8}  pc")
    for n in (int(x) for x in args.sizes.split(",")):
        nodes, links, d = random_network(n, args.seed)
        t = time.perf_counter()
        r = analyse_network(nodes, links, landscape_area_ha=100.0 * n, distance_threshold=d,
                            probability_at_threshold=0.05, min_probability=args.min_probability)
        elapsed = time.perf_counter() - t
        print(f"{n:>6} {len(links):>6} {elapsed:>8.2f}  {r.summary['pc']:.3e}", flush=True)


if __name__ == "__main__":
    main()
