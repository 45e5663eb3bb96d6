// The side panel: an asset's attributes (French labels, units) and its time series (uPlot),
// from the NGSI-LD API and its temporal API, refreshed when live events touch it.
import uPlot from '/vendor/uplot.esm.js';
import { getJson } from './api.js';
import { t, attrLabel, fmtNumber, fmtDate, locale, valueLabel } from './i18n.js';

const UNITS = { CEL: '°C', MTR: 'm', MMT: 'mm', KMH: 'km/h', MTS: 'm/s', A97: 'hPa', DD: '°', WTT: 'W',
  MQS: 'm³/s', P1: '%', C62: '' };
/** 0..1 ratios shown as percentages */
const RATIOS = new Set(['illuminanceLevel', 'relativeHumidity', 'fillingLevel', 'occupancy', 'batteryLevel', 'confidence']);
const HIDDEN = new Set(['id', 'type', '@context', 'location']);
const MAX_CHARTS = 4;

function first(attr) {
  return Array.isArray(attr) ? (attr.find((a) => !a.datasetId) || attr[0]) : attr;
}

function plain(value) {
  if (value && typeof value === 'object' && '@value' in value) return value['@value'];
  return value;
}

export function formatValue(name, attr) {
  const instance = first(attr);
  if (!instance || typeof instance !== 'object') return String(instance ?? '');
  if (instance.type === 'Relationship') return String(instance.object);
  let value = instance.value ?? instance.languageMap ?? instance.valueList ?? instance.json ?? instance.vocab;
  value = plain(value);
  if (instance.value && typeof instance.value === 'object' && instance.value['@type'] === 'DateTime') return fmtDate(value);
  if (typeof value === 'number') {
    if (RATIOS.has(name) && instance.unitCode !== 'P1') return `${fmtNumber(value * 100, 1)} %`;
    const unit = UNITS[instance.unitCode] ?? instance.unitCode ?? '';
    return `${fmtNumber(value, 2)}${unit ? ` ${unit}` : ''}`;
  }
  if (typeof value === 'boolean') return value ? '✓' : '✗';
  if (name === 'address' && value && typeof value === 'object') {
    return [value.streetAddress, value.postalCode, value.addressLocality].filter(Boolean).join(' ');
  }
  if (name === 'lastAction' && value && typeof value === 'object') {
    return `${t(`actions.${value.action}`)} — ${value.actor}${instance.observedAt ? `, ${fmtDate(instance.observedAt)}` : ''}${value.comment ? ` : « ${value.comment} »` : ''}`;
  }
  if (name === 'workflowState') return t(`workflow.${value}`);
  if (name === 'severity') return t(`severity.${value}`);
  if (name === 'domain') return t(`domains.${value}`);
  if (name === 'vigilanceLevel') return t(`vigilance.${value}`);
  if (name === 'trend') return t(`trends.${value}`);
  if (typeof value === 'string') return valueLabel(value);
  if (Array.isArray(value)) return value.join(', ');
  if (value && typeof value === 'object') return JSON.stringify(value);
  return String(value ?? '');
}

/** Merge [[value, time], ...] series on one sorted time axis for uPlot. */
export function alignSeries(seriesList) {
  const times = new Set();
  for (const series of seriesList) for (const [, time] of series.points) times.add(Date.parse(time) / 1000);
  const axis = [...times].filter(Number.isFinite).sort((a, b) => a - b);
  const position = new Map(axis.map((time, i) => [time, i]));
  const columns = seriesList.map((series) => {
    const column = new Array(axis.length).fill(null);
    for (const [value, time] of series.points) {
      const i = position.get(Date.parse(time) / 1000);
      if (i !== undefined && typeof value === 'number') column[i] = value;
    }
    return column;
  });
  return [axis, ...columns];
}

const COLOURS = ['#38bdf8', '#f97316', '#a855f7', '#22c55e', '#eab308', '#ef4444', '#14b8a6', '#f472b6'];

function chart(container, title, seriesList, unit) {
  const box = document.createElement('figure');
  box.className = 'chart';
  box.dataset.attr = title;
  const caption = document.createElement('figcaption');
  caption.textContent = `${attrLabel(title)}${unit ? ` (${unit})` : ''}`;
  box.append(caption);
  container.append(box);
  const data = alignSeries(seriesList);
  const width = Math.max(260, container.clientWidth - 16);
  const options = {
    width, height: 150, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Europe/Paris'),
    fmtDate: (template) => uPlot.fmtDate(template, null, null),
    series: [{ label: t('time') }, ...seriesList.map((series, i) => ({
      label: series.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true,
      dash: series.dash ? [5, 4] : undefined,
      points: { show: data[0].length < 60 },
      value: (u, v) => (v == null ? '–' : fmtNumber(v, 2)),
    }))],
    axes: [{ stroke: '#cbd5e1', grid: { stroke: '#334155' }, values: (u, ticks) => {
      const span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : 0;
      const format = new Intl.DateTimeFormat(locale(), span > 2 * 86400
        ? { day: '2-digit', month: '2-digit', timeZone: 'Europe/Paris' }
        : { hour: '2-digit', minute: '2-digit', timeZone: 'Europe/Paris' });
      return ticks.map((tick) => format.format(new Date(tick * 1000)));
    } },
      { stroke: '#cbd5e1', grid: { stroke: '#334155' }, values: (u, ticks) => ticks.map((v) => fmtNumber(v, 2)) }],
    legend: { show: seriesList.length > 1 },
  };
  box.chart = new uPlot(options, data, box);
  return box;
}

export class Panel {
  constructor(root, { onShowAlert }) {
    this.root = root;
    this.onShowAlert = onShowAlert;
    this.current = null;
    this.refreshTimer = null;
  }

  clear() {
    this.current = null;
    this.root.replaceChildren();
  }

  /** Open an entity: {id, context}. Returns when attributes and charts are drawn. */
  async show(target) {
    this.current = target;
    // Shows of the same entity can overlap (a click and a live refresh): only the latest
    // one may draw, or a slow, older answer would replace a fresher one.
    const request = this.request = {};
    const headers = {};
    const entity = await getJson(`/ngsi-ld/v1/entities/${encodeURIComponent(target.id)}`, { context: target.context, headers });
    if (request !== this.request) return;
    if (entity.type === 'Alert' && this.onShowAlert) {
      await this.onShowAlert(entity, target, request);
      return;
    }
    await this.render(entity, target, null, request);
  }

  async render(entity, target, extra = null, request = null) {
    if (request && request !== this.request) return;
    const root = document.createElement('div');
    root.className = 'entity';
    root.dataset.id = entity.id;
    const title = document.createElement('h2');
    const name = first(entity.name) || first(entity.description);
    title.textContent = plain(name?.value) || entity.id;
    const subtitle = document.createElement('p');
    subtitle.className = 'muted';
    subtitle.textContent = `${entity.type} · ${entity.id}`;
    root.append(title, subtitle);
    if (extra) root.append(extra);
    const table = document.createElement('table');
    table.className = 'attributes';
    table.setAttribute('data-testid', 'attributes');
    const numeric = [];
    for (const [key, attr] of Object.entries(entity)) {
      if (HIDDEN.has(key)) continue;
      const row = document.createElement('tr');
      row.dataset.attr = key;
      const label = document.createElement('th');
      label.textContent = attrLabel(key);
      const value = document.createElement('td');
      value.textContent = formatValue(key, attr);
      const instance = first(attr);
      if (instance?.observedAt) value.title = fmtDate(instance.observedAt);
      row.append(label, value);
      table.append(row);
      if (typeof instance?.value === 'number' || typeof instance?.value === 'boolean' || Array.isArray(attr)) {
        if (typeof instance?.value === 'number') numeric.push(key);
      }
    }
    if (entity.type === 'Alert') {
      root.append(table);
      this.root.replaceChildren(root);
      return;
    }
    const charts = document.createElement('section');
    charts.className = 'charts';
    charts.setAttribute('data-testid', 'charts');
    const heading = document.createElement('h3');
    heading.textContent = t('charts');
    charts.append(heading);
    root.append(table, charts);
    this.root.replaceChildren(root);
    await this.drawCharts(entity, target, charts, numeric);
  }

  async drawCharts(entity, target, container, numeric) {
    const forecast = 'forecastFlow' in entity || 'forecastLevel' in entity;
    const wanted = numeric.filter((name) => name !== 'lanternHeight' && name !== 'capacity' && name !== 'cameraNum'
      && name !== 'alertLevel' && name !== 'dangerLevel' && name !== 'referenceLevel' && name !== 'laneId').slice(0, MAX_CHARTS);
    if (forecast) for (const name of ['forecastFlow', 'forecastLevel']) if (name in entity && !wanted.includes(name)) wanted.push(name);
    if (!wanted.length) {
      container.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: t('noHistory') }));
      return;
    }
    let history;
    try {
      history = await getJson(`/ngsi-ld/v1/temporal/entities/${encodeURIComponent(entity.id)}?options=temporalValues&lastN=500&attrs=${wanted.join(',')}`,
        { context: target.context });
    } catch (error) {
      container.append(Object.assign(document.createElement('p'), { className: 'error', textContent: error.message }));
      return;
    }
    if (this.current !== target) return;
    const seriesOf = (name) => {
      const attr = history[name];
      return (Array.isArray(attr) ? attr : attr ? [attr] : []).filter((a) => Array.isArray(a.values));
    };
    let drawn = 0;
    for (const name of wanted) {
      if (name === 'forecastFlow' || name === 'forecastLevel') continue;
      const unit = UNITS[first(entity[name])?.unitCode] ?? '';
      const list = [{ label: t('observedSeries'), points: seriesOf(name).flatMap((s) => s.values) }];
      const forecastName = name === 'flow' ? 'forecastFlow' : name === 'currentLevel' ? 'forecastLevel' : null;
      if (forecastName && entity[forecastName]) {
        const latest = (Array.isArray(entity[forecastName]) ? entity[forecastName] : [entity[forecastName]])
          .filter((i) => i.observedAt).map((i) => [i.value, i.observedAt]);
        list.push({ label: t('latestForecast'), points: latest, dash: true });
        for (const series of seriesOf(forecastName)) {
          const code = (series.datasetId || '').split(':').pop();
          const hours = /^PT(\d+)H$/.exec(code);
          const lead = hours ? t('hours', { n: hours[1] }) : code;
          list.push({ label: t('forecastLead', { lead }), points: series.values, dash: true });
        }
      }
      if (list.reduce((total, series) => total + series.points.length, 0) < 2) continue; // no curve
      chart(container, name, list, RATIOS.has(name) ? '' : unit);
      drawn++;
    }
    if (!drawn) container.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: t('noHistory') }));
  }

  /** A live event touched this entity: refresh (debounced). */
  touched(id) {
    if (!this.current || this.current.id !== id) return;
    clearTimeout(this.refreshTimer);
    const target = this.current;
    this.refreshTimer = setTimeout(() => { if (this.current === target) this.show(target).catch(() => {}); }, 300);
  }
}
