"""The marketplace: AI modules and tools described by AI4OS metadata, from several sources."""

from ai4lab.catalog.model import CatalogItem, ItemError
from ai4lab.catalog.registry import Catalog

__all__ = ["Catalog", "CatalogItem", "ItemError"]
