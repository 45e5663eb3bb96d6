"""Bundled data files (contexts, geography); licences are written next to them."""
