"""Discovery of what a tenant holds (clauses 5.7.5-5.7.10): entity types and attributes,
answered from the store's counts per (type, attribute, kind) without scanning entities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.fragments import digest
from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.errors import NonexistentTenant, ResourceNotFound
from cityvisor.store.base import Store


class Discovery:
    """The discovery operations of ``EntityBroker``."""

    store: Store
    contexts: ContextRegistry

    async def _require_tenant(self, tenant: str | None) -> None:
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")


    async def types(self, tenant: str | None, context: Any, *, details: bool = False) -> Any:
        """5.7.5/5.7.6 Retrieve available entity types (EntityTypeList or EntityType[])."""
        await self._require_tenant(tenant)
        terms = await self.contexts.term_map(context)
        stats = await self.store.attribute_stats(tenant)
        by_type: dict[str, list[str]] = {}
        for stat in stats:
            if not stat.entity_type:
                continue  # the all-types rows
            names = by_type.setdefault(stat.entity_type, [])
            if stat.attribute and terms.compact(stat.attribute) not in names:
                names.append(terms.compact(stat.attribute))
        if not details:
            return {"id": f"urn:ngsi-ld:EntityTypeList:{digest(by_type)}",
                    "type": "EntityTypeList", "typeList": sorted(terms.compact(t) for t in by_type)}
        return [{"id": t, "type": "EntityType", "typeName": terms.compact(t),
                 "attributeNames": sorted(names)} for t, names in sorted(by_type.items())]

    async def type_info(self, tenant: str | None, context: Any, type_name: str) -> dict[str, Any]:
        """5.7.7 Retrieve entity type information."""
        await self._require_tenant(tenant)
        terms = await self.contexts.term_map(context)
        iri = terms.expand(type_name)
        stats = [s for s in await self.store.attribute_stats(tenant) if s.entity_type == iri]
        if not stats:
            raise ResourceNotFound(f"No entity of type {type_name} exists")
        count = sum(s.count for s in stats if not s.attribute)
        attributes: dict[str, dict[str, Any]] = {}
        for stat in stats:
            if not stat.attribute:
                continue
            info = attributes.setdefault(stat.attribute, {
                "id": stat.attribute, "type": "Attribute",
                "attributeName": terms.compact(stat.attribute), "attributeTypes": []})
            info["attributeTypes"].append(stat.kind)
        return {"id": iri, "type": "EntityTypeInfo", "typeName": terms.compact(iri),
                "entityCount": count, "attributeDetails": list(attributes.values())}

    async def attributes(self, tenant: str | None, context: Any, *, details: bool = False) -> Any:
        """5.7.8/5.7.9 Retrieve available attributes."""
        await self._require_tenant(tenant)
        terms = await self.contexts.term_map(context)
        infos = self._attribute_infos(await self.store.attribute_stats(tenant), terms)
        if not details:
            return {"id": f"urn:ngsi-ld:AttributeList:{digest(infos)}", "type": "AttributeList",
                    "attributeList": sorted(i["attributeName"] for i in infos.values())}
        # 5.7.9: the detailed list names each attribute and the types that carry it; its
        # count and kinds (optional members of Attribute, clause 5.2.28) are for 5.7.10
        return [{k: v for k, v in i.items() if k not in ("attributeCount", "attributeTypes")}
                for i in infos.values()]

    async def attribute_info(self, tenant: str | None, context: Any, name: str) -> dict[str, Any]:
        """5.7.10 Retrieve attribute information."""
        await self._require_tenant(tenant)
        terms = await self.contexts.term_map(context)
        iri = terms.expand(name)
        infos = self._attribute_infos(await self.store.attribute_stats(tenant), terms)
        if iri not in infos:
            raise ResourceNotFound(f"No entity has an attribute {name}")
        return infos[iri]

    @staticmethod
    def _attribute_infos(stats: Sequence[Any], terms: TermMap) -> dict[str, dict[str, Any]]:
        """Attribute details: counts from the all-types rows (an entity counts once), type
        names from the per-type rows."""
        infos: dict[str, dict[str, Any]] = {}
        for stat in stats:
            if not stat.attribute:
                continue
            info = infos.setdefault(stat.attribute, {
                "id": stat.attribute, "type": "Attribute",
                "attributeName": terms.compact(stat.attribute), "attributeCount": 0,
                "attributeTypes": [], "typeNames": []})
            if not stat.entity_type:
                info["attributeCount"] += stat.count
                if stat.kind not in info["attributeTypes"]:
                    info["attributeTypes"].append(stat.kind)
                continue
            type_name = terms.compact(stat.entity_type)
            if type_name not in info["typeNames"]:
                info["typeNames"].append(type_name)
        return dict(sorted(infos.items(), key=lambda item: item[1]["attributeName"]))

    # ------------------------------------------------------------ merge helper
