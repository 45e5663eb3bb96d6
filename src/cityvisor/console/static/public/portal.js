// Public commune portal: the map of Occitanie, commune search, weather, forecast and alerts.
// Plain ES module; reads only /public/api/* (public data, no sign-in). French UI.
import { fetchJSON, format, labels } from './format.js';
import { switchLanguage, t, translatePage } from './i18n.js';

const maplibregl = window.maplibregl;
maplibregl.setWorkerUrl('/vendor/maplibre-gl-csp-worker.js');

const OCCITANIE = [[-0.33, 42.33], [4.85, 45.05]];
const $ = (id) => document.getElementById(id);
const state = { departements: null, departement: null, commune: null, hovered: null };

// ------------------------------------------------------------------ map

const map = new maplibregl.Map({
  container: 'map',
  style: {
    version: 8,
    sources: {},
    layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#dbe7ef' } }],
  },
  bounds: OCCITANIE,
  fitBoundsOptions: { padding: 10 },
  attributionControl: false,
  dragRotate: false,
  pitchWithRotate: false,
});
map.touchZoomRotate.disableRotation();
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
map.addControl(new maplibregl.AttributionControl({
  compact: true, customAttribution: 'IGN – Admin Express COG 2018',
}));
window.portal = { map, state }; // for tests and curious citizens

const EMPTY = { type: 'FeatureCollection', features: [] };

map.on('load', async () => {
  const [region, departements] = await Promise.all([
    fetchJSON('/public/api/region'), fetchJSON('/public/api/departements')]);
  state.departements = departements;
  map.addSource('region', { type: 'geojson', data: region });
  map.addSource('departements', { type: 'geojson', data: departements, promoteId: 'code' });
  map.addSource('communes', { type: 'geojson', data: EMPTY, promoteId: 'code' });
  map.addSource('marker', { type: 'geojson', data: EMPTY });
  map.addLayer({ id: 'region-fill', type: 'fill', source: 'region',
    paint: { 'fill-color': '#f7f5ee' } });
  map.addLayer({ id: 'departements-fill', type: 'fill', source: 'departements', paint: {
    'fill-color': ['case', ['boolean', ['feature-state', 'hover'], false], '#cfe3c8', '#eef2e4'],
    'fill-opacity': ['case', ['boolean', ['feature-state', 'selected'], false], 0, 0.9],
  } });
  map.addLayer({ id: 'communes-fill', type: 'fill', source: 'communes', paint: {
    'fill-color': ['case',
      ['==', ['feature-state', 'temperature'], null], '#fbfaf5',
      ['interpolate', ['linear'], ['to-number', ['feature-state', 'temperature']],
        ...TEMPERATURE_SCALE.flat()]],
    'fill-opacity': ['case', ['boolean', ['feature-state', 'hover'], false], 0.6, 0.9],
  } });
  map.addLayer({ id: 'communes-line', type: 'line', source: 'communes', paint: {
    'line-color': ['case', ['boolean', ['feature-state', 'selected'], false], '#1f2a22', '#9aa79a'],
    'line-width': ['case', ['boolean', ['feature-state', 'selected'], false], 3, 0.6],
  } });
  map.addLayer({ id: 'departements-line', type: 'line', source: 'departements',
    paint: { 'line-color': '#56705a', 'line-width': 1.4 } });
  map.addLayer({ id: 'region-line', type: 'line', source: 'region',
    paint: { 'line-color': '#2f4a35', 'line-width': 2 } });
  map.addSource('alerts', { type: 'geojson', data: EMPTY });
  map.addLayer({ id: 'alerts', type: 'circle', source: 'alerts', paint: {
    'circle-radius': ['interpolate', ['linear'], ['zoom'], 6, 6, 11, 10],
    'circle-color': ['match', ['get', 'severity'],
      'critical', '#d0231f', 'high', '#ee7d1a', 'medium', '#f2c500', 'low', '#f2c500', '#3f9b4f'],
    'circle-stroke-color': '#1f2a22', 'circle-stroke-width': 1.5 } });
  map.addLayer({ id: 'marker', type: 'circle', source: 'marker', paint: {
    'circle-radius': 7, 'circle-color': '#c0392b', 'circle-stroke-color': '#fff',
    'circle-stroke-width': 2 } });
  renderDepartementChips();
  bindMapEvents();
  await refreshAlerts();
  document.body.dataset.ready = 'true';
  await route();
  setInterval(refresh, REFRESH_MS);
});

const REFRESH_MS = 60_000;
// °C -> colour, from frost blue to heat red
const TEMPERATURE_SCALE = [[-10, '#3b4cc0'], [0, '#8db0fe'], [8, '#dddcdc'], [15, '#f7d59e'],
  [22, '#f4a582'], [30, '#d6604d'], [38, '#8b1a1a']];

async function refresh() {
  try {
    await refreshAlerts();
    if (state.communesLoaded) await loadWeather(state.communesLoaded);
    if (state.commune && !$('commune-view').hidden) await showCommune(state.commune, false);
    status('');
  } catch (error) {
    status(t('refreshFailed', { error: error.message }));
  }
}

async function refreshAlerts() {
  const { alerts } = await fetchJSON('/public/api/alerts');
  state.alerts = alerts;
  map.getSource('alerts').setData({ type: 'FeatureCollection', features: alerts.map((a) => ({
    type: 'Feature', geometry: { type: 'Point', coordinates: a.position },
    properties: { severity: value(a, 'severity') || 'informational', code: a.commune.code,
      title: `${labels.alertTitle(a, value)} — ${a.commune.nom}` } })) });
  renderAlertSummary();
}

function renderAlertSummary() {
  renderAlertList($('region-alerts'), state.alerts, t('regionNoAlert'));
  if (state.communesLoaded) {
    renderAlertList($('departement-alerts'),
      state.alerts.filter((a) => a.commune.departement === state.communesLoaded), t('noAlert'));
  }
}

function renderAlertList(box, alerts, none) {
  if (!alerts.length) {
    box.replaceChildren(el('p', { class: 'no-alert' }, none));
    return;
  }
  box.replaceChildren(el('h3', {}, t('regionAlerts', { count: alerts.length })),
    el('ul', { class: 'alerts' }, alerts.slice(0, 30).map((a) => {
      const severity = value(a, 'severity') || 'informational';
      return el('li', { class: `alert severity-${severity}`, 'data-testid': 'region-alert' },
        el('a', { href: `#commune=${a.commune.code}` },
          el('strong', {}, labels.alertTitle(a, value)), ` — ${a.commune.nom}`),
        value(a, 'vigilanceLevel') ? el('span', {
          class: `badge vigilance-${value(a, 'vigilanceLevel')}` },
        t('vigilance', { level: labels.vigilance(value(a, 'vigilanceLevel')) })) : null);
    })));
}

async function loadWeather(code) {
  const { communes } = await fetchJSON(`/public/api/departements/${encodeURIComponent(code)}/weather`);
  if (state.communesLoaded !== code) return;
  state.weather = communes;
  for (const [insee, observed] of Object.entries(communes)) {
    if (typeof observed.temperature === 'number') {
      map.setFeatureState({ source: 'communes', id: insee }, { temperature: observed.temperature });
    }
  }
  $('legend').hidden = !Object.keys(communes).length;
}

function bindMapEvents() {
  map.on('click', (event) => {
    const alert = map.queryRenderedFeatures(event.point, { layers: ['alerts'] })[0];
    if (alert) { location.hash = `commune=${alert.properties.code}`; return; }
    const commune = map.queryRenderedFeatures(event.point, { layers: ['communes-fill'] })[0];
    if (commune) { location.hash = `commune=${commune.properties.code}`; return; }
    const dep = map.queryRenderedFeatures(event.point, { layers: ['departements-fill'] })[0];
    if (dep) location.hash = `departement=${dep.properties.code}`;
  });
  map.on('mousemove', (event) => {
    const hit = map.queryRenderedFeatures(event.point, { layers: ['communes-fill'] })[0]
      || map.queryRenderedFeatures(event.point, { layers: ['departements-fill'] })[0];
    setHover(hit ? { source: hit.source, id: hit.properties.code } : null);
    const tooltip = $('tooltip');
    if (!hit) { tooltip.hidden = true; map.getCanvas().style.cursor = ''; return; }
    map.getCanvas().style.cursor = 'pointer';
    tooltip.textContent = hit.source === 'communes'
      ? communeTooltip(hit.properties) : `${hit.properties.nom} (${hit.properties.code})`;
    tooltip.style.left = `${event.point.x + 12}px`;
    tooltip.style.top = `${event.point.y + 12}px`;
    tooltip.hidden = false;
  });
  map.on('mouseout', () => { setHover(null); $('tooltip').hidden = true; });
}

function communeTooltip(properties) {
  const observed = state.weather?.[properties.code];
  if (!observed || typeof observed.temperature !== 'number') return properties.nom;
  return `${properties.nom} — ${format.unit(observed.temperature, '°C', 1)}, `
    + labels.weather(observed.weatherType).toLowerCase();
}

function setHover(target) {
  const old = state.hovered;
  if (old && target && old.source === target.source && old.id === target.id) return;
  if (old) map.setFeatureState(old, { hover: false });
  if (target) map.setFeatureState(target, { hover: true });
  state.hovered = target;
}

function fit(bbox, maxZoom = 11) {
  const [west, south, east, north] = bbox;
  const narrow = window.innerWidth < 700;
  map.fitBounds([[west, south], [east, north]], {
    padding: narrow ? 30 : 80, maxZoom, duration: 600 });
}

// ------------------------------------------------------------------ navigation (URL hash)

window.addEventListener('hashchange', route);
translatePage();
$('language').addEventListener('click', switchLanguage);
$('locate').addEventListener('click', locate);

function locate() {
  if (!navigator.geolocation) { status(t('locateUnavailable')); return; }
  navigator.geolocation.getCurrentPosition(async (position) => {
    const { longitude, latitude } = position.coords;
    const response = await fetch(`/public/api/communes/at?lon=${longitude}&lat=${latitude}`);
    if (response.status === 404) { status(t('locateOutside')); return; }
    if (!response.ok) { status(t('locateFailed', { error: response.status })); return; }
    location.hash = `commune=${(await response.json()).code}`;
  }, (error) => status(t('locateFailed', { error: error.message })),
  { enableHighAccuracy: false, timeout: 15000, maximumAge: 600000 });
}
renderLegend();

function renderLegend() {
  const stops = TEMPERATURE_SCALE.map(([t, colour]) => `${colour} ${((t + 10) / 48) * 100}%`);
  $('legend').replaceChildren(el('span', {}, t('temperature')),
    el('span', { class: 'ramp', style: `background: linear-gradient(to right, ${stops.join(', ')})` }),
    el('span', { class: 'ticks' }, ...[-10, 0, 10, 20, 30].map((t) => el('span', {}, `${t}°`))));
}
for (const link of document.querySelectorAll('.back-home')) {
  link.addEventListener('click', (e) => { e.preventDefault(); location.hash = ''; });
}
$('home').addEventListener('click', (e) => { e.preventDefault(); location.hash = ''; });

async function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  try {
    if (params.get('commune')) await showCommune(params.get('commune'));
    else if (params.get('departement')) await showDepartement(params.get('departement'));
    else showRegion();
    status('');
  } catch (error) {
    status(t('loadFailed', { error: error.message }));
  }
}

function showOnly(id) {
  for (const section of ['welcome', 'departement-view', 'commune-view']) {
    $(section).hidden = section !== id;
  }
}

function selectDepartement(code) {
  if (state.departement) {
    map.setFeatureState({ source: 'departements', id: state.departement }, { selected: false });
  }
  state.departement = code;
  if (code) map.setFeatureState({ source: 'departements', id: code }, { selected: true });
}

function selectCommune(code) {
  if (state.commune) map.setFeatureState({ source: 'communes', id: state.commune }, { selected: false });
  state.commune = code;
  if (code) map.setFeatureState({ source: 'communes', id: code }, { selected: true });
}

function showRegion() {
  selectCommune(null);
  selectDepartement(null);
  map.getSource('communes').setData(EMPTY);
  map.getSource('marker').setData(EMPTY);
  state.communesLoaded = null;
  $('legend').hidden = true;
  map.fitBounds(OCCITANIE, { padding: 10, duration: 600 });
  showOnly('welcome');
  document.title = t('title');
}

function departementFeature(code) {
  return state.departements.features.find((f) => f.properties.code === code);
}

async function loadCommunes(code) {
  if (state.departement === code && state.communesLoaded === code) return;
  const communes = await fetchJSON(`/public/api/departements/${encodeURIComponent(code)}/communes`);
  selectCommune(null);
  map.removeFeatureState({ source: 'communes' });
  state.weather = {};
  map.getSource('communes').setData(communes);
  selectDepartement(code);
  state.communesLoaded = code;
  state.communeCount = communes.features.length;
  await loadWeather(code);
}

async function showDepartement(code) {
  const feature = departementFeature(code);
  if (!feature) throw new Error(t('unknownDepartement', { code }));
  await loadCommunes(code);
  selectCommune(null);
  map.getSource('marker').setData(EMPTY);
  fit(feature.properties.bbox, 10);
  $('departement-name').textContent = `${feature.properties.nom} (${code})`;
  $('departement-info').textContent = t('departementInfo', { count: format.integer(state.communeCount) });
  renderAlertSummary();
  showOnly('departement-view');
  document.title = `${feature.properties.nom} — ${t('title')}`;
}

async function showCommune(code, refit = true) {
  const view = await fetchJSON(`/public/api/communes/${encodeURIComponent(code)}`);
  const commune = view.commune;
  await loadCommunes(commune.departement);
  selectCommune(commune.code);
  map.getSource('marker').setData({ type: 'Feature', properties: {},
    geometry: { type: 'Point', coordinates: [commune.lon, commune.lat] } });
  if (refit) fit(commune.bbox, 11);
  const depLink = $('commune-departement');
  depLink.textContent = view.departement.nom;
  depLink.href = `#departement=${view.departement.code}`;
  $('commune-name').textContent = commune.nom;
  renderAlerts(view.alerts, view.flood);
  renderWeather(view.weather);
  renderForecast(view.forecast);
  renderFlood(view.flood);
  $('commune-updated').textContent = t('updated', { when: format.dateTime(view.generatedAt) });
  showOnly('commune-view');
  document.title = `${commune.nom} — ${t('title')}`;
}

// ------------------------------------------------------------------ panels

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('data-')) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function renderDepartementChips() {
  const list = $('departements');
  list.replaceChildren(...state.departements.features
    .slice().sort((a, b) => a.properties.nom.localeCompare(b.properties.nom, 'fr'))
    .map((f) => el('li', {}, el('a', { href: `#departement=${f.properties.code}` },
      `${f.properties.nom} (${f.properties.code})`))));
}

const value = (entity, name) => {
  const attr = entity?.[name];
  const v = Array.isArray(attr) ? attr[0]?.value : attr?.value;
  return v && typeof v === 'object' && '@value' in v ? v['@value'] : v;
};

function renderWeather(weather) {
  const box = $('weather');
  if (!weather) {
    box.replaceChildren(el('h3', {}, t('currentWeather')),
      el('p', { class: 'empty' }, t('noObservation')));
    return;
  }
  const type = value(weather, 'weatherType');
  const rows = [
    [t('humidity'), format.percent(value(weather, 'relativeHumidity'))],
    [t('wind'), format.wind(value(weather, 'windSpeed'), value(weather, 'windDirection'))],
    [t('rainHour'), format.unit(value(weather, 'precipitation'), 'mm', 1)],
    [t('pressure'), format.unit(value(weather, 'atmosphericPressure'), 'hPa', 0)],
  ].filter(([, text]) => text);
  box.replaceChildren(
    el('h3', {}, t('currentWeather')),
    el('div', { class: 'now' },
      el('span', { class: 'icon', 'data-testid': 'weather-icon' }, labels.icon(type)),
      el('span', { class: 'temperature', 'data-testid': 'weather-temperature' },
        format.unit(value(weather, 'temperature'), '°C', 1)),
      el('span', { class: 'type' }, labels.weather(type))),
    el('dl', { class: 'facts' }, rows.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    el('p', { class: 'note' }, t('observed', { when: format.dateTime(value(weather, 'dateObserved')) }),
      simulated(weather)));
}

function simulated(entity) {
  const provider = value(entity, 'dataProvider');
  return provider && /simulat/i.test(provider) ? t('simulated') : '';
}

function renderForecast(forecast) {
  const box = $('forecast');
  if (!forecast.length) { box.replaceChildren(); return; }
  box.replaceChildren(el('h3', {}, t('forecast')), el('ol', { class: 'days' }, forecast.map((f) => {
    const min = value(f, 'dayMinimum')?.temperature;
    const max = value(f, 'dayMaximum')?.temperature;
    const type = value(f, 'weatherType');
    const rain = value(f, 'precipitation');
    const probability = value(f, 'precipitationProbability');
    return el('li', { 'data-testid': 'forecast-day' },
      el('span', { class: 'day' }, format.day(value(f, 'validFrom'))),
      el('span', { class: 'icon', title: labels.weather(type) }, labels.icon(type)),
      el('span', { class: 'range' },
        el('span', { class: 'min' }, format.unit(min, '°', 0)), ' / ',
        el('span', { class: 'max' }, format.unit(max, '°', 0))),
      el('span', { class: 'rain' }, rain > 0 ? format.unit(rain, 'mm', 1) : '',
        probability != null ? ` ${format.percent(probability)}` : ''));
  })));
}

function renderAlerts(alerts) {
  const box = $('alerts');
  if (!alerts.length) {
    box.replaceChildren(el('p', { class: 'no-alert', 'data-testid': 'no-alert' },
      t('noAlert')));
    return;
  }
  box.replaceChildren(el('h3', {}, t('alerts')), el('ul', { class: 'alerts' },
    alerts.map((a) => {
      const severity = value(a, 'severity') || 'informational';
      const vigilance = value(a, 'vigilanceLevel');
      return el('li', { class: `alert severity-${severity}`, 'data-testid': 'alert' },
        el('strong', {}, labels.alertTitle(a, value)),
        vigilance ? el('span', { class: `badge vigilance-${vigilance}` },
          t('vigilance', { level: labels.vigilance(vigilance) })) : null,
        el('p', {}, value(a, 'description') || ''),
        el('p', { class: 'note' }, [
          value(a, 'dateIssued') ? t('issued', { when: format.dateTime(value(a, 'dateIssued')) }) : '',
          value(a, 'validTo') ? t('until', { when: format.dateTime(value(a, 'validTo')) }) : '',
        ].join('')));
    })));
}

function renderFlood(points) {
  const box = $('flood');
  if (!points.length) { box.replaceChildren(); return; }
  box.replaceChildren(el('h3', {}, t('flood')), el('ul', { class: 'flood' },
    points.map((p) => {
      const level = value(p, 'vigilanceLevel') || 'green';
      const peak = value(p, 'forecastPeak');
      return el('li', { 'data-testid': 'flood-point' },
        el('span', { class: `badge vigilance-${level}` }, labels.vigilance(level)),
        ` ${value(p, 'name') || t('floodPoint')}`,
        value(p, 'trend') ? ` — ${labels.trend(value(p, 'trend'))}` : '',
        peak != null ? t('peak', { value: format.unit(peak, 'm³/s', 0) }) : '');
    })));
}

function status(text) { $('status').textContent = text; }

// ------------------------------------------------------------------ search

const input = $('search');
const list = $('suggestions');
let searchSeq = 0;
let active = -1;
let debounce = null;

input.addEventListener('input', () => {
  clearTimeout(debounce);
  debounce = setTimeout(suggest, 120);
});
input.addEventListener('keydown', (event) => {
  const items = [...list.children];
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    if (!items.length) return;
    active = (active + (event.key === 'ArrowDown' ? 1 : -1) + items.length) % items.length;
    items.forEach((item, i) => item.setAttribute('aria-selected', String(i === active)));
  } else if (event.key === 'Enter') {
    event.preventDefault();
    const chosen = items[Math.max(active, 0)];
    if (chosen) choose(chosen.dataset.code);
    else suggest().then(() => list.firstElementChild && choose(list.firstElementChild.dataset.code));
  } else if (event.key === 'Escape') {
    closeSuggestions();
  }
});
document.addEventListener('click', (event) => {
  if (!event.target.closest('.search')) closeSuggestions();
});

async function suggest() {
  const query = input.value.trim();
  const seq = ++searchSeq;
  if (!query) { closeSuggestions(); return; }
  const answer = await fetchJSON(`/public/api/communes/search?q=${encodeURIComponent(query)}&limit=8`);
  if (seq !== searchSeq) return; // a newer query is on its way
  active = -1;
  list.replaceChildren(...answer.results.map((c) => {
    const item = el('li', { role: 'option', 'data-code': c.code },
      el('span', { class: 'name' }, c.nom),
      el('span', { class: 'where' }, `${c.departementNom} (${c.departement})`));
    item.addEventListener('click', () => choose(c.code));
    return item;
  }));
  if (!answer.results.length) {
    list.replaceChildren(el('li', { class: 'none' }, t('noCommune')));
  }
  list.hidden = false;
  input.setAttribute('aria-expanded', 'true');
}

function closeSuggestions() {
  list.hidden = true;
  input.setAttribute('aria-expanded', 'false');
  active = -1;
}

function choose(code) {
  if (!code) return;
  closeSuggestions();
  input.value = '';
  input.blur();
  location.hash = `commune=${code}`;
}
