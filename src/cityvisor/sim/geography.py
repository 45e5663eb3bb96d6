"""Geography of Nîmes Métropole for the demo-city generator.

Loads the 39 bundled commune polygons (``cityvisor/data/geo/nimes-metropole-communes.geojson``,
IGN Admin Express COG 2018 via france-geojson, Licence Ouverte 2.0 / Etalab — see the README next
to it) and samples random points inside them with vectorised rejection sampling (shapely 2
``contains_xy`` on prepared polygons), so tens of thousands of points take a few milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

COMMUNES_RESOURCE = "data/geo/nimes-metropole-communes.geojson"
NIMES_INSEE = "30189"
#: Écusson / Maison Carrée, the dense historic core of Nîmes (lon, lat).
NIMES_CORE = (4.3562, 43.8383)
#: Coordinates are emitted with 6 decimals (~0.1 m); containment is tested after rounding.
COORD_DECIMALS = 6

#: Approximate courses (north → south, lon/lat, hand-drawn, ±500 m) of the Nîmes cadereaux —
#: the usually-dry torrents that drain the garrigues through the city into the Vistre and
#: caused the floods of 3 October 1988 — plus the Vistre itself and the Canal de l'Agau.
CADEREAUX: dict[str, list[tuple[float, float]]] = {
    "Cadereau d'Alès": [(4.3445, 43.8840), (4.3500, 43.8600), (4.3560, 43.8450),
                        (4.3620, 43.8250), (4.3650, 43.8080)],
    "Cadereau d'Uzès": [(4.3780, 43.8800), (4.3720, 43.8560), (4.3700, 43.8400),
                        (4.3760, 43.8180)],
    "Cadereau de Camplanier": [(4.3280, 43.8700), (4.3370, 43.8500), (4.3450, 43.8330),
                               (4.3500, 43.8180)],
    "Cadereau du Valladas": [(4.3100, 43.8560), (4.3180, 43.8400), (4.3260, 43.8250)],
    "Cadereau de Saint-Césaire (Pondre)": [(4.2950, 43.8450), (4.3050, 43.8250),
                                           (4.3150, 43.8100)],
    "Vallat de Riquet": [(4.3980, 43.8650), (4.3950, 43.8450), (4.3900, 43.8250)],
    "Cadereau du Rieu (Pissevin)": [(4.3150, 43.8350), (4.3250, 43.8250), (4.3350, 43.8150)],
    "Cadereau de Ville-Verte": [(4.3050, 43.8600), (4.3150, 43.8450)],
    "Vistre": [(4.4200, 43.8300), (4.3900, 43.8100), (4.3600, 43.8000), (4.3300, 43.7900),
               (4.3000, 43.7800)],
    "Canal de l'Agau": [(4.3470, 43.8410), (4.3560, 43.8350), (4.3650, 43.8270)],
    # Drains the garrigue above the Valdegour district (west of the city) between the
    # Saint-Césaire and Valladas courses.
    "Cadereau de Valdegour": [(4.3000, 43.8500), (4.3070, 43.8400), (4.3120, 43.8300),
                              (4.3180, 43.8200)],
}


@dataclass(frozen=True)
class Commune:
    """One commune: INSEE code, official name, approximate population, main postal code."""

    index: int  # 0-based position in the bundled file (Nîmes first)
    code: str
    name: str
    population: int
    postal_code: str
    geometry: BaseGeometry  # prepared shapely polygon, WGS84 lon/lat

    @property
    def area(self) -> float:
        """Area in square degrees (only used for relative weights)."""
        return float(self.geometry.area)


@lru_cache(maxsize=1)
def load_communes() -> tuple[Commune, ...]:
    """The 39 communes of Nîmes Métropole, Nîmes first (cached; geometries prepared)."""
    text = resources.files("cityvisor").joinpath(COMMUNES_RESOURCE).read_text("utf-8")
    communes = []
    for i, feat in enumerate(json.loads(text)["features"]):
        props = feat["properties"]
        geom = shape(feat["geometry"])
        shapely.prepare(geom)
        communes.append(Commune(i, props["code"], props["nom"], int(props["population"]),
                                props["codePostal"], geom))
    return tuple(communes)


@lru_cache(maxsize=1)
def metropole_outline() -> BaseGeometry:
    """Union of all commune polygons (prepared)."""
    geom = shapely.union_all([c.geometry for c in load_communes()])
    shapely.prepare(geom)
    return geom


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    quota = total * w / w.sum()
    counts = np.floor(quota).astype(int)
    rest = total - counts.sum()
    if rest:
        order = np.lexsort((np.arange(len(w)), -(quota - counts)))  # stable tie-break
        counts[order[:rest]] += 1
    return counts


def sample_in(rng: np.random.Generator, geom: BaseGeometry, n: int,
              core: tuple[float, float] | None = None, core_share: float = 0.0,
              core_sigma: tuple[float, float] = (0.022, 0.016)) -> np.ndarray:
    """``n`` random (lon, lat) points strictly inside ``geom``, rounded to COORD_DECIMALS.

    Points are uniform over the polygon, except a ``core_share`` fraction drawn from a
    Gaussian around ``core`` (urban density). Rejection is vectorised: candidates are drawn
    in blocks and filtered with ``shapely.contains_xy``.
    """
    if n <= 0:
        return np.empty((0, 2))
    minx, miny, maxx, maxy = geom.bounds
    fill = max(geom.area / ((maxx - minx) * (maxy - miny)), 0.05)
    n_core = round(n * core_share) if core is not None else 0
    parts = []
    for k, gaussian in ((n_core, True), (n - n_core, False)):
        got, need = [], k
        while need > 0:
            m = int(need / (0.5 if gaussian else fill) * 1.2) + 16
            if gaussian:
                assert core is not None  # n_core > 0 only with a core
                x = rng.normal(core[0], core_sigma[0], m)
                y = rng.normal(core[1], core_sigma[1], m)
            else:
                x = rng.uniform(minx, maxx, m)
                y = rng.uniform(miny, maxy, m)
            x, y = np.round(x, COORD_DECIMALS), np.round(y, COORD_DECIMALS)
            ok = shapely.contains_xy(geom, x, y)
            pts = np.column_stack((x[ok], y[ok]))[:need]
            got.append(pts)
            need -= len(pts)
        parts.extend(got)
    return np.concatenate(parts) if parts else np.empty((0, 2))


def sample_communes(rng: np.random.Generator, total: int, weights: np.ndarray,
                    core_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Distribute ``total`` points over the communes by ``weights``.

    Returns ``(points, commune_index)``: an (n, 2) lon/lat array and the 0-based commune index
    of each point, grouped by commune (Nîmes first). ``core_share`` of Nîmes' points are
    concentrated around its historic centre.
    """
    communes = load_communes()
    counts = allocate(total, weights)
    pts, idx = [], []
    for c, k in zip(communes, counts, strict=False):
        if k == 0:
            continue
        core = NIMES_CORE if c.code == NIMES_INSEE else None
        pts.append(sample_in(rng, c.geometry, int(k), core, core_share))
        idx.append(np.full(int(k), c.index))
    return np.concatenate(pts), np.concatenate(idx)


def commune_at(lon: float, lat: float) -> Commune | None:
    """The commune containing a point, or None outside the metropole."""
    for c in load_communes():
        if shapely.contains_xy(c.geometry, lon, lat):
            return c
    return None


def points_along(rng: np.random.Generator, line: list[tuple[float, float]], n: int,
                 jitter: float = 0.0005) -> np.ndarray:
    """``n`` points spread evenly along a polyline (upstream first), lightly jittered,
    kept inside the metropole."""
    ls = shapely.LineString(line)
    outline = metropole_outline()
    out = []
    for f in (np.arange(n) + 0.5) / n:
        p = ls.interpolate(float(f), normalized=True)
        for _ in range(1000):
            x, y = np.round(np.array([p.x, p.y]) + rng.normal(0.0, jitter, 2), COORD_DECIMALS)
            if shapely.contains_xy(outline, x, y) and commune_at(x, y) is not None:
                break
        else:
            raise ValueError(f"polyline point {p} is outside the metropole")
        out.append((x, y))
    return np.array(out).reshape(-1, 2)
