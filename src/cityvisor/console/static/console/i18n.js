// Labels of the console in French (default) and English; numbers and dates through Intl.
const TEXTS = {
  fr: {
    title: 'Console de supervision', signOut: 'Se déconnecter', layers: 'Couches',
    tabAlarms: 'Alarmes', tabCrisis: 'Crue', tabDetails: 'Détails',
    domain: 'Domaine', commune: 'Commune', stateFilter: 'État', all: 'Tous', allF: 'Toutes',
    openAlerts: 'Ouvertes', allAlerts: 'Toutes', level: 'Vigilance', point: 'Point',
    observed: 'Observé', trend: 'Tendance', peak: 'Pic prévu',
    crisisHelp: "Points d'alerte crue, du plus urgent au moins urgent.",
    clickAsset: 'Cliquez un équipement sur la carte ou une alarme.',
    signIn: 'Connexion', operatorName: "Nom de l'opérateur", token: "Jeton d'accès",
    tokenHelp: 'Jeton créé par « cityvisor token create ».', signInButton: 'Se connecter',
    openModeNote: 'Mode démonstration sans authentification (boucle locale uniquement) : indiquez seulement votre nom.',
    openMode: 'mode démo sans authentification', liveTitle: 'Mises à jour en direct',
    nameRequired: 'Indiquez votre nom.', tokenRequired: 'Indiquez votre jeton.',
    signInFailed: 'Connexion refusée', alarmsCount: '{n} alarme(s)', noAlarms: 'Aucune alarme.',
    noPoints: "Aucun point d'alerte crue.", attributes: 'Attributs', charts: 'Historique',
    noHistory: 'Pas encore d’historique.', history: 'Journal des actions', comment: 'Commentaire',
    assignee: 'Affecter à', shelveFor: 'Mettre en attente pendant', actionFailed: 'Action refusée',
    who: 'par', at: 'le', loading: 'Chargement…', criticalAlert: 'Nouvelle alerte critique',
    forecastLead: 'prévision à {lead}', latestForecast: 'dernière prévision', observedSeries: 'observé',
    readOnly: 'Lecture seule : votre rôle ne permet pas d’agir sur les alarmes.',
    minutes: '{n} min', hours: '{n} h', inTime: 'dans {t}', confidence: 'Confiance', locate: 'Localiser sur la carte', time: 'Heure',
    workflow: { new: 'Nouvelle', acknowledged: 'Acquittée', assigned: 'Affectée', shelved: 'En attente',
      resolved: 'Résolue', closed: 'Close' },
    actions: { acknowledge: 'Acquitter', assign: 'Affecter', shelve: 'Mettre en attente',
      unshelve: 'Reprendre', resolve: 'Résoudre', close: 'Clore' },
    severity: { critical: 'Critique', high: 'Élevée', medium: 'Moyenne', low: 'Faible',
      informational: 'Information' },
    trends: { rising: '↗ en hausse', steady: '→ stable', falling: '↘ en baisse' },
    vigilance: { red: 'Rouge', orange: 'Orange', yellow: 'Jaune', green: 'Verte' },
    domains: { flood: 'Inondation', lighting: 'Éclairage', traffic: 'Circulation', security: 'Sécurité',
      weather: 'Météo', environment: 'Environnement', seismic: 'Séisme' },
    kinds: { streetlights: 'Éclairage public', cameras: 'Caméras', rainGauges: 'Pluviomètres',
      waterLevels: 'Limnimètres', seismometers: 'Sismomètres', weatherStations: 'Stations météo',
      evChargers: 'Bornes de recharge', wasteContainers: 'Conteneurs', trafficCounters: 'Comptages routiers' },
    states: { on: 'allumé', dimmed: 'abaissé', off: 'éteint', faulty: 'en panne', unknown: 'inconnu',
      ok: 'normal', dry: 'sec', light: 'faible', moderate: 'modérée', heavy: 'forte',
      green: 'vert', yellow: 'jaune', orange: 'orange', red: 'rouge', available: 'disponible',
      full: 'plein', outOfService: 'hors service', high: 'presque plein', incident: 'incident',
      fluid: 'fluide', slow: 'ralenti', congested: 'saturé' },
    attrs: { name: 'Nom', status: 'État', powerState: 'Alimentation', illuminanceLevel: "Niveau d'éclairement",
      powerConsumption: 'Consommation', lanternHeight: 'Hauteur du mât', dateLastLampChange: 'Dernier changement de lampe',
      refStreetlightGroup: 'Groupe', address: 'Adresse', location: 'Position', cameraName: 'Nom de la caméra',
      cameraType: 'Type de caméra', cameraUsage: 'Usage', on: 'En service', precipitation: 'Précipitations',
      temperature: 'Température', relativeHumidity: 'Humidité relative', windSpeed: 'Vitesse du vent',
      windDirection: 'Direction du vent', atmosphericPressure: 'Pression atmosphérique',
      dateObserved: "Date d'observation", currentLevel: "Hauteur d'eau", alertLevel: "Seuil d'alerte",
      dangerLevel: 'Seuil de danger', referenceLevel: 'Niveau de référence', measuredDistance: 'Distance mesurée',
      floodLevelStatus: 'État de crue', flow: 'Débit', forecastFlow: 'Débit prévu', forecastLevel: 'Hauteur prévue',
      forecastPeak: 'Pic prévu', trend: 'Tendance', vigilanceLevel: 'Vigilance', confidence: 'Confiance',
      confidenceIssues: 'Problèmes de données', deviceState: "État de l'appareil", batteryLevel: 'Batterie',
      serialNumber: 'Numéro de série', capacity: 'Capacité', availableCapacity: 'Places libres',
      operator: 'Opérateur', socketType: 'Prises', fillingLevel: 'Remplissage', storedWasteKind: 'Déchets',
      dateLastEmptying: 'Dernière collecte', intensity: 'Débit de véhicules', averageVehicleSpeed: 'Vitesse moyenne',
      occupancy: 'Occupation', congested: 'Saturé', severity: 'Gravité', category: 'Catégorie',
      subCategory: 'Sous-catégorie', description: 'Description', dateIssued: 'Émise le',
      workflowState: 'État de traitement', assignee: 'Affectée à', shelvedUntil: "En attente jusqu'à",
      lastAction: 'Dernière action', domain: 'Domaine', validFrom: 'Valide depuis', validTo: "Valide jusqu'à",
      inseeCode: 'Code INSEE', stationID: 'Station', observationDateTime: "Date d'observation" },
  },
  en: {
    title: 'Supervision console', signOut: 'Sign out', layers: 'Layers',
    tabAlarms: 'Alarms', tabCrisis: 'Flood', tabDetails: 'Details',
    domain: 'Domain', commune: 'Commune', stateFilter: 'State', all: 'All', allF: 'All',
    openAlerts: 'Open', allAlerts: 'All', level: 'Vigilance', point: 'Point',
    observed: 'Observed', trend: 'Trend', peak: 'Forecast peak',
    crisisHelp: 'Flood warning points, most urgent first.',
    clickAsset: 'Click an asset on the map or an alarm.',
    signIn: 'Sign in', operatorName: 'Operator name', token: 'Access token',
    tokenHelp: 'A token from “cityvisor token create”.', signInButton: 'Sign in',
    openModeNote: 'Unauthenticated demo mode (loopback only): just give your name.',
    openMode: 'unauthenticated demo mode', liveTitle: 'Live updates',
    nameRequired: 'Give your name.', tokenRequired: 'Give your token.',
    signInFailed: 'Sign-in refused', alarmsCount: '{n} alarm(s)', noAlarms: 'No alarms.',
    noPoints: 'No flood warning point.', attributes: 'Attributes', charts: 'History',
    noHistory: 'No history yet.', history: 'Action log', comment: 'Comment',
    assignee: 'Assign to', shelveFor: 'Shelve for', actionFailed: 'Action refused',
    who: 'by', at: 'on', loading: 'Loading…', criticalAlert: 'New critical alert',
    forecastLead: 'forecast {lead} ahead', latestForecast: 'latest forecast', observedSeries: 'observed',
    readOnly: 'Read only: your role may not act on alarms.',
    minutes: '{n} min', hours: '{n} h', inTime: 'in {t}', confidence: 'Confidence', locate: 'Show on the map', time: 'Time',
    workflow: { new: 'New', acknowledged: 'Acknowledged', assigned: 'Assigned', shelved: 'Shelved',
      resolved: 'Resolved', closed: 'Closed' },
    actions: { acknowledge: 'Acknowledge', assign: 'Assign', shelve: 'Shelve', unshelve: 'Unshelve',
      resolve: 'Resolve', close: 'Close' },
    severity: { critical: 'Critical', high: 'High', medium: 'Medium', low: 'Low', informational: 'Info' },
    trends: { rising: '↗ rising', steady: '→ steady', falling: '↘ falling' },
    vigilance: { red: 'Red', orange: 'Orange', yellow: 'Yellow', green: 'Green' },
    domains: { flood: 'Flood', lighting: 'Lighting', traffic: 'Traffic', security: 'Security',
      weather: 'Weather', environment: 'Environment', seismic: 'Earthquake' },
    kinds: { streetlights: 'Streetlights', cameras: 'Cameras', rainGauges: 'Rain gauges',
      waterLevels: 'Water-level gauges', seismometers: 'Seismometers', weatherStations: 'Weather stations',
      evChargers: 'EV chargers', wasteContainers: 'Waste containers', trafficCounters: 'Traffic counters' },
    states: { on: 'on', dimmed: 'dimmed', off: 'off', faulty: 'faulty', unknown: 'unknown', ok: 'normal',
      dry: 'dry', light: 'light', moderate: 'moderate', heavy: 'heavy', green: 'green', yellow: 'yellow',
      orange: 'orange', red: 'red', available: 'available', full: 'full', outOfService: 'out of service',
      high: 'nearly full', incident: 'incident', fluid: 'fluid', slow: 'slow', congested: 'congested' },
    attrs: {},
  },
};

let language = sessionStorage.getItem('cityvisor.lang') || 'fr';

export function lang() { return language; }
export function locale() { return language === 'fr' ? 'fr-FR' : 'en-GB'; }
export function setLang(value) { language = value; sessionStorage.setItem('cityvisor.lang', value); }

/** A text by key ("actions.resolve"), with {placeholders}; falls back to French, then the key. */
export function t(key, params = {}) {
  const find = (table) => key.split('.').reduce((node, part) => (node == null ? undefined : node[part]), table);
  let text = find(TEXTS[language]);
  if (text === undefined) text = find(TEXTS.fr);
  if (text === undefined) text = key.split('.').pop();
  return String(text).replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

/** French labels of common Smart Data Models enumeration values (shown as is in English). */
const VALUES_FR = {
  on: 'allumé', off: 'éteint', low: 'abaissé', bootingUp: 'en démarrage', ok: 'normal',
  defectiveLamp: 'lampe défectueuse', brokenLantern: 'lanterne cassée', columnIssue: 'problème de mât',
  working: 'en service', full: 'complet', outOfService: 'hors service', lidOpen: 'couvercle ouvert',
  vandalized: 'vandalisé', moved: 'déplacé', glass: 'verre', paper: 'papier', plastic: 'plastique',
  inorganic: 'non recyclable', forward: 'sens direct', backward: 'sens inverse', Normal: 'normal',
  weather: 'météo', flood: 'inondation', FIXED: 'fixe', DOME: 'dôme', PTZ: 'PTZ', BULLET: 'tube',
  SURVEILLANCE: 'vidéoprotection', TRAFFIC: 'circulation',
};

export function valueLabel(value) {
  return language === 'fr' ? (VALUES_FR[value] || value) : value;
}

/** A French (or English) label for an attribute name; the name itself when unknown. */
export function attrLabel(name) {
  return language === 'fr' ? (TEXTS.fr.attrs[name] || name) : name;
}

export function fmtNumber(value, digits = 2) {
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(value);
}

export function fmtDate(value) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return new Intl.DateTimeFormat(locale(), { dateStyle: 'short', timeStyle: 'medium',
    timeZone: 'Europe/Paris' }).format(date);
}

export function fmtAge(value) {
  const minutes = Math.round((Date.now() - new Date(value).getTime()) / 60000);
  if (!Number.isFinite(minutes)) return '';
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  if (Math.abs(minutes) < 60) return rtf.format(-minutes, 'minute');
  if (Math.abs(minutes) < 48 * 60) return rtf.format(-Math.round(minutes / 60), 'hour');
  return rtf.format(-Math.round(minutes / 1440), 'day');
}

/** Apply the static labels of the page (data-i18n, data-i18n-title). */
export function translatePage(root = document) {
  document.documentElement.lang = language;
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
}
