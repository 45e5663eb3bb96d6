"""The bundled geography of Occitanie the portal and the weather simulator read."""

from __future__ import annotations

from importlib import resources

import orjson
import shapely

from cityvisor.data.geo import occitanie
from cityvisor.sim import geography as metropole

GEO = resources.files("cityvisor.data.geo")


def test_thirteen_departements_and_all_their_communes() -> None:
    departements = occitanie.departements()
    assert [d.code for d in departements] == ["09", "11", "12", "30", "31", "32", "34", "46",
                                              "48", "65", "66", "81", "82"]
    communes = occitanie.communes()
    assert len(communes) == 4485 and len({c.code for c in communes}) == 4485
    for commune in communes:
        assert commune.code.startswith(commune.departement), commune
        west, south, east, north = commune.bbox
        assert west <= commune.lon <= east and south <= commune.lat <= north
    assert occitanie.communes_by_code()["30189"].name == "Nîmes"


def test_label_points_lie_in_their_commune() -> None:
    for commune in occitanie.communes()[::5]:
        polygon = occitanie.commune_geometry(commune.code)
        assert shapely.distance(polygon, shapely.Point(commune.lon, commune.lat)) < 0.005, commune


def test_commune_at_finds_the_commune_of_a_point() -> None:
    assert occitanie.commune_at(4.3601, 43.8367).name == "Nîmes"  # Maison Carrée
    assert occitanie.commune_at(1.4442, 43.6047).name == "Toulouse"  # Capitole
    assert occitanie.commune_at(3.8767, 43.6108).name == "Montpellier"  # Comédie
    assert occitanie.commune_at(3.9, 43.2) is None  # the Gulf of Lion
    assert occitanie.commune_at(5.37, 43.30) is None  # Marseille, outside Occitanie


def test_the_shipped_files_stay_small_and_keep_the_metropole_file() -> None:
    sizes = [GEO.joinpath("communes", f"{d.code}.geojson").read_bytes()
             for d in occitanie.departements()]
    assert sum(len(s) for s in sizes) < 3_000_000
    outline = orjson.loads(occitanie.departements_bytes())
    assert len(outline["features"]) == 13 and len(occitanie.departements_bytes()) < 200_000
    # the Nîmes Métropole file used by the demo city is untouched
    assert len(metropole.load_communes()) == 39
