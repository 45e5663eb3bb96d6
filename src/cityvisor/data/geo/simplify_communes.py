"""Build the bundled commune files of Occitanie from the france-geojson sources (run once).

    python -m cityvisor.data.geo.simplify_communes ../shared/data/geo/occitanie

reads ``communes-DD-*.geojson`` (IGN Admin Express COG 2018, 5-decimal coordinates) and writes,
next to this file:

* ``communes/DD.geojson`` — the communes of each département, simplified as one *coverage*
  (GEOS coverage simplification: neighbouring communes keep identical shared edges, so the map
  shows no gaps or overlaps), coordinates rounded to 4 decimals (~10 m). Properties: ``code``
  (INSEE), ``nom``, ``departement`` and ``lon``/``lat``, a label point inside the *original*
  polygon (where the portal puts the marker and the weather simulator its station);
* ``departements-occitanie-simplified.geojson`` — the 13 départements as the union of their
  simplified communes (borders match the commune layer exactly). Properties ``code``, ``nom``.

Deterministic: the same sources give byte-identical files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import mapping, shape

HERE = Path(__file__).resolve().parent
#: GEOS coverage simplification tolerance, degrees (~250 m): ~100,000 vertices for 4,485 communes
TOLERANCE = 0.003
DECIMALS = 4


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _geometry(geom: shapely.Geometry) -> dict[str, object]:
    raw = mapping(geom)  # type: ignore[arg-type]  # shapely's stubs: a Geometry has __geo_interface__
    return {"type": raw["type"], "coordinates": _rounded(raw["coordinates"])}


def _dump(data: object, path: Path) -> int:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    return len(text.encode())


def build(source: Path) -> None:
    names = {f["properties"]["code"]: f["properties"]["nom"] for f in json.loads(
        (source / "departements-occitanie.geojson").read_text("utf-8"))["features"]}
    features: list[dict[str, Any]] = []
    for path in sorted(source.glob("communes-*.geojson")):
        department = path.name.split("-")[1]
        for feature in json.loads(path.read_text("utf-8"))["features"]:
            feature["properties"]["departement"] = department
            features.append(feature)
    geoms = [shape(f["geometry"]) for f in features]
    labels = shapely.point_on_surface(geoms)
    simplified = shapely.coverage_simplify(geoms, TOLERANCE)
    (HERE / "communes").mkdir(exist_ok=True)
    total = 0
    departments: list[dict[str, object]] = []
    for department in sorted(names):
        chosen = [i for i, f in enumerate(features)
                  if f["properties"]["departement"] == department]  # type: ignore[index]
        out = []
        for i in sorted(chosen, key=lambda i: features[i]["properties"]["code"]):  # type: ignore[index]
            props = features[i]["properties"]
            out.append({"type": "Feature", "properties": {
                "code": props["code"], "nom": props["nom"], "departement": department,  # type: ignore[index]
                "lon": round(labels[i].x, 5), "lat": round(labels[i].y, 5)},
                "geometry": _geometry(simplified[i])})
        total += _dump({"type": "FeatureCollection", "features": out},
                       HERE / "communes" / f"{department}.geojson")
        outline = shapely.coverage_union_all([simplified[i] for i in chosen])
        departments.append({"type": "Feature",
                            "properties": {"code": department, "nom": names[department]},
                            "geometry": _geometry(outline)})
    size = _dump({"type": "FeatureCollection", "features": departments},
                 HERE / "departements-occitanie-simplified.geojson")
    print(f"{len(features)} communes, {total / 1e6:.2f} MB; départements {size / 1e3:.0f} kB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build(Path(sys.argv[1]))
