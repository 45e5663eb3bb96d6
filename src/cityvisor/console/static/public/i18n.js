// Texts of the public portal: French first, English available (?lang=en or the FR/EN button).
// The choice is kept in localStorage; switching reloads the page so every formatter follows.

const TEXTS = {
  fr: {
    brand: 'Ma commune',
    title: 'Ma commune — météo et alertes en Occitanie',
    subtitle: 'météo et alertes en Occitanie',
    searchLabel: 'Rechercher une commune',
    searchPlaceholder: 'Rechercher une commune (ex. Nîmes)',
    mapLabel: 'Carte de l’Occitanie',
    welcome: 'Touchez un département sur la carte, ou cherchez votre commune, pour voir sa météo, '
      + 'ses prévisions et les alertes en cours.',
    footer: 'Fonds : IGN – Admin Express COG 2018 (Licence Ouverte). '
      + 'Portail public cityvisor, données publiques seulement.',
    home: 'Toute l’Occitanie',
    otherLanguage: 'EN', otherLanguageTitle: 'English version',
    loadFailed: 'Impossible de charger ces données : {error}',
    refreshFailed: 'Mise à jour impossible : {error}',
    unknownDepartement: 'département {code} inconnu',
    regionNoAlert: 'Aucune alerte publique en cours en Occitanie.',
    regionAlerts: 'Alertes en cours ({count})',
    vigilance: 'Vigilance {level}',
    departementInfo: '{count} communes. Touchez une commune sur la carte ou cherchez-la par son nom.',
    updated: 'Mis à jour {when}.',
    currentWeather: 'Météo actuelle',
    noObservation: 'Pas d’observation publique pour cette commune.',
    humidity: 'Humidité', wind: 'Vent', rainHour: 'Pluie (1 h)', pressure: 'Pression',
    observed: 'Observé {when}', simulated: ' — données simulées (démonstration)',
    forecast: 'Prévisions',
    noAlert: 'Aucune alerte publique en cours.',
    alerts: 'Alertes en cours',
    issued: 'Émise {when}', until: ' — jusqu’à {when}',
    flood: 'Vigilance crues', floodPoint: 'Point de surveillance', peak: ' — pic prévu {value}',
    noCommune: 'Aucune commune trouvée en Occitanie',
    temperature: 'Température',
    at: 'le {date}',
    alert: 'Alerte',
    locate: 'Ma commune (position)',
    locateUnavailable: 'Votre navigateur ne donne pas votre position.',
    locateFailed: 'Position indisponible : {error}',
    locateOutside: 'Votre position n’est pas dans une commune d’Occitanie.',
  },
  en: {
    brand: 'My town',
    title: 'My town — weather and alerts in Occitanie',
    subtitle: 'weather and alerts in Occitanie',
    searchLabel: 'Search for a town',
    searchPlaceholder: 'Search for a town (e.g. Nîmes)',
    mapLabel: 'Map of Occitanie',
    welcome: 'Tap a département on the map, or search for your town, to see its weather, '
      + 'forecast and current alerts.',
    footer: 'Base map: IGN – Admin Express COG 2018 (Licence Ouverte). '
      + 'cityvisor public portal, public data only.',
    home: 'All of Occitanie',
    otherLanguage: 'FR', otherLanguageTitle: 'Version française',
    loadFailed: 'Could not load these data: {error}',
    refreshFailed: 'Could not refresh: {error}',
    unknownDepartement: 'unknown département {code}',
    regionNoAlert: 'No public alert in Occitanie at the moment.',
    regionAlerts: 'Current alerts ({count})',
    vigilance: '{level} warning',
    departementInfo: '{count} towns. Tap a town on the map or search for it by name.',
    updated: 'Updated {when}.',
    currentWeather: 'Current weather',
    noObservation: 'No public observation for this town.',
    humidity: 'Humidity', wind: 'Wind', rainHour: 'Rain (1 h)', pressure: 'Pressure',
    observed: 'Observed {when}', simulated: ' — simulated data (demonstration)',
    forecast: 'Forecast',
    noAlert: 'No public alert at the moment.',
    alerts: 'Current alerts',
    issued: 'Issued {when}', until: ' — until {when}',
    flood: 'Flood warnings', floodPoint: 'Monitoring point', peak: ' — forecast peak {value}',
    noCommune: 'No town found in Occitanie',
    temperature: 'Temperature',
    at: '{date}',
    alert: 'Alert',
    locate: 'My town (location)',
    locateUnavailable: 'Your browser does not give your location.',
    locateFailed: 'Location unavailable: {error}',
    locateOutside: 'Your location is not in a town of Occitanie.',
  },
};

function chosen() {
  const asked = new URLSearchParams(location.search).get('lang');
  if (asked && asked in TEXTS) {
    localStorage.setItem('cityvisor.lang', asked);
    return asked;
  }
  const kept = localStorage.getItem('cityvisor.lang');
  return kept && kept in TEXTS ? kept : 'fr';
}

export const lang = chosen();
export const locale = lang === 'fr' ? 'fr-FR' : 'en-GB';

export function t(key, vars = {}) {
  const text = TEXTS[lang][key] ?? TEXTS.fr[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

export function switchLanguage() {
  localStorage.setItem('cityvisor.lang', lang === 'fr' ? 'en' : 'fr');
  const url = new URL(location.href);
  if (url.searchParams.has('lang')) {
    url.searchParams.delete('lang');
    location.replace(url.toString());
  } else {
    location.reload();
  }
}

/** Fill the static page: elements with data-i18n (text), data-i18n-placeholder, -title, -aria. */
export function translatePage() {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of document.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
  for (const node of document.querySelectorAll('[data-i18n-aria]')) {
    node.setAttribute('aria-label', t(node.dataset.i18nAria));
  }
}
