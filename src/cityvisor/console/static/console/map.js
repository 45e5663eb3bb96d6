// The map: local geography (communes, département, region) and one WebGL circle layer per kind
// of asset, styled by state, toggled from the legend, updated live.
import { getJson } from './api.js';
import { t, fmtNumber } from './i18n.js';

const maplibregl = window.maplibregl;

/** Colours by kind and state (also the legend). */
export const STYLES = {
  streetlights: { on: '#ffd23f', dimmed: '#b8901c', off: '#6b7280', faulty: '#ef4444', unknown: '#9ca3af' },
  cameras: { on: '#38bdf8', off: '#64748b', unknown: '#9ca3af' },
  rainGauges: { dry: '#bfdbfe', light: '#60a5fa', moderate: '#2563eb', heavy: '#1e3a8a', unknown: '#9ca3af' },
  waterLevels: { green: '#22c55e', yellow: '#facc15', orange: '#f97316', red: '#dc2626', unknown: '#9ca3af' },
  seismometers: { ok: '#a855f7', faulty: '#ef4444', unknown: '#9ca3af' },
  weatherStations: { ok: '#14b8a6' },
  evChargers: { available: '#10b981', full: '#f59e0b', outOfService: '#ef4444', unknown: '#9ca3af' },
  wasteContainers: { ok: '#84cc16', high: '#f59e0b', full: '#ef4444', incident: '#7c3aed', unknown: '#9ca3af' },
  trafficCounters: { fluid: '#22c55e', slow: '#f59e0b', congested: '#dc2626' },
};
/** Circle radius at zoom 9 and 16: dense layers small, rare ones big. */
const SIZES = {
  streetlights: [1, 4], cameras: [1.5, 5], wasteContainers: [1.2, 5], trafficCounters: [2.5, 7],
  evChargers: [2.5, 7], rainGauges: [4, 9], waterLevels: [5, 10], seismometers: [4, 9], weatherStations: [4, 9],
};
export const KIND_ORDER = Object.keys(STYLES);

export class CityMap {
  constructor(container, { tileUrl, onSelect }) {
    this.onSelect = onSelect;
    this.layers = {}; // kind -> {meta, ids, index, features, dirty}
    this.flushTimer = null;
    const style = {
      version: 8,
      sources: {},
      layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#0f172a' } }],
    };
    if (tileUrl) {
      style.sources.tiles = { type: 'raster', tiles: [tileUrl], tileSize: 256 };
      style.layers.push({ id: 'tiles', type: 'raster', source: 'tiles', paint: { 'raster-opacity': 0.6 } });
    }
    maplibregl.setWorkerUrl('/vendor/maplibre-gl-csp-worker.js');
    this.map = new maplibregl.Map({
      container, style, center: [4.36, 43.84], zoom: 10, maxZoom: 19, minZoom: 6,
      attributionControl: { compact: true, customAttribution: 'IGN Admin Express COG 2018 (Licence Ouverte)' },
      transformRequest: (url) => ({ url }),
    });
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
    this.map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
    this.loaded = new Promise((resolve) => this.map.on('load', resolve));
  }

  async addGeography() {
    await this.loaded;
    const [region, departements, communes] = await Promise.all(
      ['region', 'departements', 'communes'].map((name) => getJson(`/console/api/geo/${name}`)));
    this.communes = communes;
    this.map.addSource('region', { type: 'geojson', data: region });
    this.map.addSource('departements', { type: 'geojson', data: departements });
    this.map.addSource('communes', { type: 'geojson', data: communes });
    this.map.addLayer({ id: 'region-fill', type: 'fill', source: 'region', paint: { 'fill-color': '#1e293b' } });
    this.map.addLayer({ id: 'departements-line', type: 'line', source: 'departements',
      paint: { 'line-color': '#475569', 'line-width': 1.2 } });
    this.map.addLayer({ id: 'communes-fill', type: 'fill', source: 'communes',
      paint: { 'fill-color': '#334155', 'fill-opacity': 0.55 } });
    this.map.addLayer({ id: 'communes-line', type: 'line', source: 'communes',
      paint: { 'line-color': '#94a3b8', 'line-width': ['interpolate', ['linear'], ['zoom'], 9, 0.4, 14, 1.5] } });
    const bounds = new maplibregl.LngLatBounds();
    for (const feature of communes.features) {
      for (const ring of feature.geometry.type === 'Polygon' ? feature.geometry.coordinates
        : feature.geometry.coordinates.flat()) for (const point of ring) bounds.extend(point);
    }
    this.map.fitBounds(bounds, { padding: 20, duration: 0 });
    return communes;
  }

  /** Load one layer from /console/api/layers/{kind} (or an already started request) and draw it. */
  async loadLayer(kind, visible = true, pending = null) {
    const data = await (pending || getJson(`/console/api/layers/${kind}`));
    const features = new Array(data.count);
    for (let i = 0; i < data.count; i++) {
      features[i] = { type: 'Feature', id: i, geometry: { type: 'Point', coordinates: [data.lon[i], data.lat[i]] },
        properties: { s: data.state[i], v: data.value[i] } };
    }
    const index = new Map(data.ids.map((id, i) => [id, i]));
    const layer = { meta: data, ids: data.ids, index, features, dirty: false };
    this.layers[kind] = layer;
    const collection = { type: 'FeatureCollection', features };
    const source = this.map.getSource(`src-${kind}`);
    if (source) {
      source.setData(collection);
      return layer;
    }
    this.map.addSource(`src-${kind}`, { type: 'geojson', data: collection });
    const colours = Object.entries(STYLES[kind]).flat();
    const [small, big] = SIZES[kind];
    this.map.addLayer({
      id: `layer-${kind}`, type: 'circle', source: `src-${kind}`,
      layout: { visibility: visible ? 'visible' : 'none' },
      paint: {
        'circle-color': ['match', ['get', 's'], ...colours, '#9ca3af'],
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 9, small, 16, big],
        'circle-stroke-width': big >= 7 ? 1 : 0, 'circle-stroke-color': '#0f172a',
      },
    });
    return layer;
  }

  setVisible(kind, visible) {
    if (this.map.getLayer(`layer-${kind}`)) {
      this.map.setLayoutProperty(`layer-${kind}`, 'visibility', visible ? 'visible' : 'none');
    }
  }

  isVisible(kind) {
    return this.map.getLayer(`layer-${kind}`) && this.map.getLayoutProperty(`layer-${kind}`, 'visibility') !== 'none';
  }

  enableSelection() {
    this.map.on('click', (event) => {
      const { x, y } = event.point;
      const layers = KIND_ORDER.filter((kind) => this.isVisible(kind)).map((kind) => `layer-${kind}`).reverse();
      const found = this.map.queryRenderedFeatures([[x - 5, y - 5], [x + 5, y + 5]], { layers });
      if (!found.length) return;
      const feature = found[0];
      const kind = feature.layer.id.slice('layer-'.length);
      const layer = this.layers[kind];
      const id = layer.ids[feature.id];
      if (id) this.onSelect({ kind, id, context: layer.meta.context });
    });
    for (const kind of KIND_ORDER) {
      this.map.on('mouseenter', `layer-${kind}`, () => { this.map.getCanvas().style.cursor = 'pointer'; });
      this.map.on('mouseleave', `layer-${kind}`, () => { this.map.getCanvas().style.cursor = ''; });
    }
  }

  /** Project of a point to the screen (tests click through it). */
  screenPoint(kind, id) {
    const layer = this.layers[kind];
    const i = layer?.index.get(id);
    if (i === undefined) return null;
    const point = this.map.project(layer.features[i].geometry.coordinates);
    return { x: point.x, y: point.y };
  }

  /** Apply live events; sources are refreshed at most twice a second. */
  applyEvents(events) {
    for (const event of events) {
      const kinds = event.deleted ? (event.kinds || []) : (event.kind ? [event.kind] : []);
      for (const kind of kinds) {
        const layer = this.layers[kind];
        if (!layer) continue;
        const i = layer.index.get(event.id);
        if (event.deleted) {
          if (i !== undefined) {
            // Move the last point into the freed slot (as the server's layer cache does):
            // a deletion costs O(1), not a renumbering of the whole layer.
            const last = layer.ids.length - 1;
            if (i !== last) {
              layer.features[i] = layer.features[last];
              layer.features[i].id = i;
              layer.ids[i] = layer.ids[last];
              layer.index.set(layer.ids[i], i);
            }
            layer.features.pop();
            layer.ids.pop();
            layer.index.delete(event.id);
            layer.dirty = true;
          }
          continue;
        }
        const geometry = { type: 'Point', coordinates: [event.lon, event.lat] };
        const properties = { s: event.state, v: event.value };
        if (i === undefined) {
          layer.index.set(event.id, layer.ids.length);
          layer.features.push({ type: 'Feature', id: layer.ids.length, geometry, properties });
          layer.ids.push(event.id);
        } else {
          layer.features[i].geometry = geometry;
          layer.features[i].properties = properties;
        }
        layer.dirty = true;
      }
    }
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 500);
  }

  flush() {
    this.flushTimer = null;
    for (const [kind, layer] of Object.entries(this.layers)) {
      if (!layer.dirty) continue;
      layer.dirty = false;
      this.map.getSource(`src-${kind}`)?.setData({ type: 'FeatureCollection', features: layer.features });
    }
    this.onFlush?.();
  }

  /** Counts by state of a loaded layer (legend). */
  counts(kind) {
    const counts = {};
    for (const feature of this.layers[kind]?.features || []) {
      counts[feature.properties.s] = (counts[feature.properties.s] || 0) + 1;
    }
    return counts;
  }

  flyTo(coordinates) {
    this.map.flyTo({ center: coordinates, zoom: Math.max(this.map.getZoom(), 14) });
  }
}

/** The legend: one checkbox per kind with its count, and the colours of its states. */
export function renderLegend(list, cityMap, visible) {
  list.replaceChildren();
  for (const kind of KIND_ORDER) {
    const layer = cityMap.layers[kind];
    const item = document.createElement('li');
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = visible[kind] !== false;
    box.dataset.kind = kind;
    box.setAttribute('data-testid', `toggle-${kind}`);
    box.addEventListener('change', () => {
      visible[kind] = box.checked;
      cityMap.setVisible(kind, box.checked);
    });
    const name = document.createElement('span');
    name.textContent = `${t(`kinds.${kind}`)} (${fmtNumber(layer ? layer.features.length : 0, 0)})`;
    label.append(box, name);
    const swatches = document.createElement('div');
    swatches.className = 'swatches';
    const counts = cityMap.counts(kind);
    for (const [state, colour] of Object.entries(STYLES[kind])) {
      if (!counts[state] && state === 'unknown') continue;
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.title = `${t(`states.${state}`)} : ${fmtNumber(counts[state] || 0, 0)}`;
      swatch.style.background = colour;
      const text = document.createElement('small');
      text.textContent = t(`states.${state}`);
      swatches.append(swatch, text);
    }
    item.append(label, swatches);
    list.append(item);
  }
}
