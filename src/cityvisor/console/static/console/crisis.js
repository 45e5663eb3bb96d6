// The flood crisis view: warning points by urgency (vigilance, then time to the forecast peak).
import { getJson } from './api.js';
import { t, fmtNumber, fmtDate } from './i18n.js';

export const FLOOD_CONTEXT = 'https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld';

function timeTo(peakTime) {
  const minutes = Math.round((Date.parse(peakTime) - Date.now()) / 60000);
  if (!Number.isFinite(minutes) || minutes < 0) return '';
  return t('inTime', { t: minutes < 120 ? t('minutes', { n: minutes }) : t('hours', { n: fmtNumber(minutes / 60, 1) }) });
}

export async function renderCrisis(body, { onSelect }) {
  const data = await getJson('/console/api/flood');
  body.replaceChildren();
  if (!data.points.length) {
    const row = document.createElement('tr');
    const cell = Object.assign(document.createElement('td'), { colSpan: 5, className: 'muted', textContent: t('noPoints') });
    row.append(cell);
    body.append(row);
    return data;
  }
  for (const point of data.points) {
    const row = document.createElement('tr');
    row.dataset.id = point.id;
    row.className = `vigilance-${point.vigilanceLevel}`;
    const level = document.createElement('td');
    level.append(Object.assign(document.createElement('span'), {
      className: `pill ${point.vigilanceLevel}`, textContent: t(`vigilance.${point.vigilanceLevel}`) }));
    const name = document.createElement('td');
    name.append(Object.assign(document.createElement('strong'), { textContent: point.name || point.id }));
    if (point.commune) name.append(Object.assign(document.createElement('div'), { className: 'muted', textContent: point.commune }));
    if (point.confidence != null && point.confidence < 0.7) {
      name.append(Object.assign(document.createElement('div'), { className: 'warn',
        textContent: `${t('confidence')} ${fmtNumber(point.confidence * 100, 0)} % ${(point.confidenceIssues || []).join(', ')}` }));
    }
    const observed = document.createElement('td');
    observed.textContent = [point.flow != null ? `${fmtNumber(point.flow, 1)} m³/s` : null,
      point.currentLevel != null ? `${fmtNumber(point.currentLevel, 2)} m` : null].filter(Boolean).join(' · ');
    const trend = Object.assign(document.createElement('td'), { textContent: point.trend ? t(`trends.${point.trend}`) : '' });
    const peak = document.createElement('td');
    if (point.forecastPeak?.value != null) {
      peak.textContent = `${fmtNumber(point.forecastPeak.value, 1)} m³/s`;
      if (point.forecastPeak.peakTime) {
        peak.append(Object.assign(document.createElement('div'), { className: 'muted',
          textContent: `${fmtDate(point.forecastPeak.peakTime)} ${timeTo(point.forecastPeak.peakTime)}` }));
      }
    }
    row.append(level, name, observed, trend, peak);
    row.addEventListener('click', () => onSelect({ kind: 'waterLevels', id: point.id, context: FLOOD_CONTEXT, location: point.location }));
    body.append(row);
  }
  return data;
}
