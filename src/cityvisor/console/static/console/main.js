// The operator console: sign-in, map, legend, side panel, alarms, flood crisis view, live events.
import { ApiError, getJson, session, followEvents } from './api.js';
import { t, lang, setLang, translatePage } from './i18n.js';
import { CityMap, KIND_ORDER, renderLegend } from './map.js';
import { Panel } from './panel.js';
import { Alarms } from './alarms.js';
import { renderCrisis } from './crisis.js';

const $ = (selector) => document.querySelector(selector);
const state = { visible: {}, operator: null, mode: null };
const app = { events: 0, ready: null, firstPaintMs: null, beeps: 0 };
window.cityvisorConsole = app;

function selectTab(name) {
  for (const button of document.querySelectorAll('#tabs button')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === name));
  }
  for (const tab of document.querySelectorAll('.tab')) tab.hidden = tab.id !== `tab-${name}`;
}

function switchLanguage() {
  setLang(lang() === 'fr' ? 'en' : 'fr');
  $('#lang-switch').textContent = lang() === 'fr' ? 'English' : 'Français';
  translatePage();
  showOperator();
  app.rerender?.();
}

function showOperator() {
  const operator = state.operator;
  $('#operator-name').textContent = operator ? `${operator.actor} · ${operator.role}` : '';
  const badge = $('#mode-badge');
  badge.hidden = !operator || operator.mode !== 'open';
  badge.textContent = t('openMode');
  $('#sign-out').hidden = !operator;
}

/** Ask for a token (auth on) or just a name (demo mode); resolves with the checked session. */
function signIn(mode) {
  const overlay = $('#signin');
  overlay.hidden = false;
  $('#signin-open-note').hidden = mode.auth;
  $('#signin-token-row').hidden = !mode.auth;
  $('#signin-token-help').hidden = !mode.auth;
  $('#signin-name-row').hidden = mode.auth;
  (mode.auth ? $('#signin-token') : $('#signin-name')).focus();
  return new Promise((resolve) => {
    $('#signin-form').onsubmit = async (event) => {
      event.preventDefault();
      const error = $('#signin-error');
      error.textContent = '';
      const name = $('#signin-name').value.trim();
      const token = $('#signin-token').value.trim();
      if (!mode.auth && !name) { error.textContent = t('nameRequired'); return; }
      if (mode.auth && !token) { error.textContent = t('tokenRequired'); return; }
      const candidate = mode.auth ? { token } : { name };
      try {
        const checked = await getJson('/console/api/session', { current: candidate });
        session.save({ ...candidate, tenant: checked.tenant });
        overlay.hidden = true;
        resolve(checked);
      } catch (failure) {
        error.textContent = `${t('signInFailed')} : ${failure.message}`;
      }
    };
  });
}

async function ensureSession(mode) {
  const saved = session.load();
  if (saved && (mode.auth ? saved.token : saved.name)) {
    try {
      return await getJson('/console/api/session');
    } catch (failure) {
      if (!(failure instanceof ApiError)) throw failure;
      session.clear();
    }
  }
  return signIn(mode);
}

function signalCritical(alarms, events) {
  const critical = events.filter((event) => event.critical);
  if (!critical.length) return;
  const banner = $('#critical-banner');
  banner.textContent = `⚠ ${t('criticalAlert')} (${critical.length}) — ${critical[0].id}`;
  banner.hidden = false;
  banner.onclick = () => { banner.hidden = true; alarms.open(critical[0].id); };
  alarms.beep();
}

async function start() {
  translatePage();
  $('#lang-switch').textContent = lang() === 'fr' ? 'English' : 'Français';
  $('#lang-switch').addEventListener('click', switchLanguage);
  for (const button of document.querySelectorAll('#tabs button')) {
    button.addEventListener('click', () => selectTab(button.dataset.tab));
  }
  const mode = await getJson('/console/api/mode');
  state.mode = mode;
  state.operator = await ensureSession(mode);
  showOperator();
  $('#sign-out').addEventListener('click', () => { session.clear(); window.location.reload(); });

  const panelRoot = $('#tab-details');
  let alarms = null;
  const panel = new Panel(panelRoot, { onShowAlert: (entity, target, request) => alarms.renderAlert(entity, target, request) });
  const select = async (target) => {
    selectTab('details');
    panelRoot.replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: t('loading') }));
    try {
      await panel.show(target);
    } catch (failure) {
      panelRoot.replaceChildren(Object.assign(document.createElement('p'), { className: 'error', textContent: failure.message }));
    }
  };
  const cityMap = new CityMap($('#map'), { tileUrl: state.operator.tileUrl, onSelect: select });
  app.map = cityMap;
  alarms = new Alarms({
    list: $('#alarm-list'), count: $('#alarm-count'), panel, canAct: () => state.operator.canAct,
    filters: { domain: $('#filter-domain'), commune: $('#filter-commune'), state: $('#filter-state') },
    onLocate: (coordinates) => cityMap.flyTo(coordinates), onOpen: () => selectTab('details'),
  });
  alarms.unlockAudio();
  document.addEventListener('pointerdown', () => alarms.unlockAudio(), { once: true });
  alarms.fillDomains();
  app.alarms = alarms;

  const crisisBody = $('#crisis-table tbody');
  const refreshCrisis = () => renderCrisis(crisisBody, { onSelect: select }).catch(() => {});
  let crisisTimer = null;
  app.rerender = () => {
    alarms.render();
    renderLegend($('#legend-list'), cityMap, state.visible);
    refreshCrisis();
  };

  // Follow the live changes first, and buffer them until the layers are loaded, so that no
  // change made between a layer's snapshot and the stream's start is lost (replaying one the
  // snapshot already holds is harmless: the latest state wins).
  let buffered = [];
  const handle = (events) => {
    app.events += events.length;
    cityMap.applyEvents(events);
    let alertsChanged = false;
    let floodChanged = false;
    for (const event of events) {
      panel.touched(event.id);
      if (event.alert) alertsChanged = true;
      if (event.type === 'FloodMonitoring') floodChanged = true;
    }
    if (alertsChanged) alarms.scheduleRefresh();
    if (floodChanged) { clearTimeout(crisisTimer); crisisTimer = setTimeout(refreshCrisis, 500); }
    signalCritical(alarms, events);
  };
  let connected;
  const streaming = new Promise((resolve) => { connected = resolve; });
  followEvents({
    onState: (value) => {
      $('#live-status').dataset.state = value;
      app.live = value === 'live';
      if (app.live) connected();
    },
    onResync: () => KIND_ORDER.forEach((kind) => cityMap.loadLayer(kind)),
    onSignedOut: () => { session.clear(); window.location.reload(); },
    onEvents: (events) => (buffered ? buffered.push(...events) : handle(events)),
  });
  // the layers come from the server's live cache once this console's stream is counted
  await Promise.race([streaming, new Promise((resolve) => setTimeout(resolve, 2000))]);

  app.ready = (async () => {
    const started = performance.now();
    // ask for every layer at once, while the map and its geography load
    const requests = Object.fromEntries(KIND_ORDER.map((kind) => [kind, getJson(`/console/api/layers/${kind}`)]));
    const communes = await cityMap.addGeography();
    alarms.fillCommunes(communes);
    await Promise.all(KIND_ORDER.map((kind) => cityMap.loadLayer(kind, state.visible[kind] !== false, requests[kind])));
    const replay = buffered;
    buffered = null;
    if (replay.length) handle(replay);
    renderLegend($('#legend-list'), cityMap, state.visible);
    cityMap.onFlush = () => renderLegend($('#legend-list'), cityMap, state.visible); // live counts
    cityMap.enableSelection();
    await new Promise((resolve) => cityMap.map.once('idle', resolve));
    app.firstPaintMs = performance.now();
    app.layersMs = performance.now() - started;
    await Promise.all([alarms.refresh(), refreshCrisis()]);
    return true;
  })();
  app.ready.catch((failure) => console.error(failure));
  await app.ready;
}

start().catch((failure) => {
  console.error(failure);
  document.body.append(Object.assign(document.createElement('p'), { className: 'error', textContent: String(failure) }));
});
