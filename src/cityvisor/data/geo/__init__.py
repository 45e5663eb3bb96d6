"""Bundled geography (GeoJSON, IGN Admin Express COG 2018, Licence Ouverte 2.0) and its readers."""
