// Formatting (fr-FR or en-GB, Europe/Paris time) and labels of the public portal.
import { lang, locale, t } from './i18n.js';

const LOCALE = locale;
const ZONE = 'Europe/Paris';

export async function fetchJSON(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!response.ok) {
    let detail = `${response.status}`;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    throw new Error(detail);
  }
  return response.json();
}

const numbers = new Map();
function number(digits) {
  if (!numbers.has(digits)) {
    numbers.set(digits, new Intl.NumberFormat(LOCALE, {
      minimumFractionDigits: digits, maximumFractionDigits: digits }));
  }
  return numbers.get(digits);
}
const dateTime = new Intl.DateTimeFormat(LOCALE, {
  timeZone: ZONE, weekday: 'long', day: 'numeric', month: 'long', hour: '2-digit', minute: '2-digit' });
const day = new Intl.DateTimeFormat(LOCALE, { timeZone: ZONE, weekday: 'short', day: 'numeric' });
const COMPASS = lang === 'fr' ? ['N', 'NE', 'E', 'SE', 'S', 'SO', 'O', 'NO']
  : ['N', 'NE', 'E', 'SE', 'S', 'SW', 'W', 'NW'];

export const format = {
  integer: (n) => number(0).format(n),
  unit(value, unit, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return '';
    return `${number(digits).format(Number(value))}${unit.startsWith('°') ? '' : '\u202f'}${unit}`;
  },
  percent(value) {
    if (value === null || value === undefined) return '';
    return `${number(0).format(Number(value) * 100)}\u202f%`;
  },
  wind(speed, direction) {
    if (speed === null || speed === undefined) return '';
    const kmh = `${number(0).format(Number(speed) * 3.6)}\u202fkm/h`;
    if (direction === null || direction === undefined) return kmh;
    return `${kmh} (${COMPASS[Math.round(Number(direction) / 45) % 8]})`;
  },
  dateTime(iso) {
    const date = iso ? new Date(iso) : null;
    return date && !Number.isNaN(date.getTime()) ? t('at', { date: dateTime.format(date) }) : '';
  },
  day(iso) {
    const date = iso ? new Date(new Date(iso).getTime() + 3600_000) : null; // inside the local day
    return date && !Number.isNaN(date.getTime()) ? day.format(date) : '';
  },
};

// Symbols from the basic Unicode blocks (present in common fonts, no colour-emoji font needed)
const WEATHER = {
  clearNight: ['☾', 'Nuit claire', 'Clear night'], sunnyDay: ['☀', 'Ensoleillé', 'Sunny'],
  slightlyCloudy: ['⛅', 'Peu nuageux', 'A few clouds'], partlyCloudy: ['⛅', 'Éclaircies', 'Partly cloudy'],
  cloudy: ['☁', 'Nuageux', 'Cloudy'], veryCloudy: ['☁', 'Très nuageux', 'Very cloudy'],
  overcast: ['☁', 'Couvert', 'Overcast'], highClouds: ['⛅', 'Voiles nuageux', 'High clouds'],
  mist: ['≋', 'Brume', 'Mist'], fog: ['≋', 'Brouillard', 'Fog'], drizzle: ['☂', 'Bruine', 'Drizzle'],
  lightRain: ['☂', 'Pluie faible', 'Light rain'], lightRainShower: ['☂', 'Averses', 'Showers'],
  heavyRain: ['☔', 'Forte pluie', 'Heavy rain'], heavyRainShower: ['☔', 'Fortes averses', 'Heavy showers'],
  shower: ['☂', 'Averses', 'Showers'], thunder: ['⚡', 'Orages', 'Thunderstorms'],
  thunderShower: ['⚡', 'Averses orageuses', 'Thundery showers'],
  lightSnow: ['❄', 'Neige faible', 'Light snow'], snow: ['❄', 'Neige', 'Snow'],
  heavySnow: ['❄', 'Fortes chutes de neige', 'Heavy snow'], sleet: ['❄', 'Pluie et neige', 'Sleet'],
  hail: ['❄', 'Grêle', 'Hail'],
};
const VIGILANCE = {
  green: ['verte', 'Green'], yellow: ['jaune', 'Yellow'], orange: ['orange', 'Orange'], red: ['rouge', 'Red'],
};
const TREND = { rising: ['en hausse', 'rising'], steady: ['stable', 'steady'], falling: ['en baisse', 'falling'] };
const SUBCATEGORY = {
  flood: ['Crue', 'Flood'], flashFlood: ['Crue soudaine', 'Flash flood'],
  heavyRain: ['Fortes pluies', 'Heavy rain'], storm: ['Orages', 'Storms'], snow: ['Neige', 'Snow'],
  ice: ['Verglas', 'Ice'], highTemperature: ['Canicule', 'Heatwave'],
  lowTemperature: ['Grand froid', 'Extreme cold'], wind: ['Vent violent', 'Strong wind'],
  fireRisk: ['Risque d’incendie', 'Fire risk'], earthquake: ['Séisme', 'Earthquake'],
};
const CATEGORY = {
  weather: ['Météo', 'Weather'], environment: ['Environnement', 'Environment'],
  traffic: ['Circulation', 'Traffic'], security: ['Sécurité', 'Security'], health: ['Santé', 'Health'],
  agriculture: ['Agriculture', 'Agriculture'],
};
const pick = (entry) => (entry ? entry[lang === 'fr' ? 0 : 1] : undefined);

export const labels = {
  weather: (type) => (WEATHER[type] ? WEATHER[type][lang === 'fr' ? 1 : 2] : type || ''),
  icon: (type) => (WEATHER[type] || ['·'])[0],
  vigilance: (level) => pick(VIGILANCE[level]) || level,
  trend: (trend) => pick(TREND[trend]) || trend,
  alertTitle(alert, value) {
    return pick(SUBCATEGORY[value(alert, 'subCategory')]) || pick(CATEGORY[value(alert, 'category')])
      || value(alert, 'name') || t('alert');
  },
};
