// The alarm console: Alert entities by severity and age, filters, workflow actions with a
// comment, the audit trail, and the visible + audible signal of new critical alerts.
import { getJson, postJson } from './api.js';
import { t, fmtDate, fmtAge, fmtNumber } from './i18n.js';

export const ALERT_CONTEXT = 'https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld';
const ALLOWED = {
  acknowledge: ['new'], assign: ['new', 'acknowledged', 'assigned'], shelve: ['new', 'acknowledged', 'assigned'],
  unshelve: ['shelved'], resolve: ['new', 'acknowledged', 'assigned', 'shelved'], close: ['resolved'],
};
const NEEDS_COMMENT = new Set(['shelve', 'resolve']);
const SHELVE_CHOICES = [15, 60, 240, 1440];

export class Alarms {
  constructor({ list, count, filters, panel, canAct, onLocate, onOpen }) {
    Object.assign(this, { list, count, filters, panel, canAct, onLocate, onOpen });
    this.alerts = [];
    this.audio = null;
    this.refreshTimer = null;
    for (const select of Object.values(filters)) select.addEventListener('change', () => this.refresh());
  }

  fillCommunes(communes) {
    const names = communes.features.map((f) => [f.properties.code, f.properties.nom])
      .sort((a, b) => a[1].localeCompare(b[1], 'fr'));
    for (const [code, name] of names) {
      const option = document.createElement('option');
      option.value = code;
      option.textContent = name;
      option.dataset.name = name;
      this.filters.commune.append(option);
    }
  }

  fillDomains() {
    for (const domain of ['flood', 'weather', 'lighting', 'traffic', 'security', 'environment', 'seismic']) {
      const option = document.createElement('option');
      option.value = domain;
      option.textContent = t(`domains.${domain}`);
      this.filters.domain.append(option);
    }
  }

  async refresh() {
    const params = new URLSearchParams({ state: this.filters.state.value });
    if (this.filters.domain.value) params.set('domain', this.filters.domain.value);
    if (this.filters.commune.value) params.set('commune', this.filters.commune.value);
    const data = await getJson(`/console/api/alerts?${params}`);
    this.alerts = data.alerts;
    this.render();
    return data;
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), 250);
  }

  render() {
    this.count.textContent = this.alerts.length ? t('alarmsCount', { n: fmtNumber(this.alerts.length, 0) }) : t('noAlarms');
    this.list.replaceChildren();
    for (const alert of this.alerts) {
      const item = document.createElement('li');
      item.className = `alarm severity-${alert.severity} state-${alert.workflowState}`;
      item.dataset.id = alert.id;
      item.tabIndex = 0;
      const head = document.createElement('div');
      head.className = 'alarm-head';
      const severity = document.createElement('span');
      severity.className = 'sev';
      severity.textContent = t(`severity.${alert.severity}`);
      const state = document.createElement('span');
      state.className = 'wf';
      state.dataset.testid = 'workflow-state';
      state.textContent = t(`workflow.${alert.workflowState}`);
      const age = document.createElement('span');
      age.className = 'muted';
      age.textContent = alert.dateIssued ? fmtAge(alert.dateIssued) : '';
      if (alert.dateIssued) age.title = fmtDate(alert.dateIssued);
      head.append(severity, state, age);
      const text = document.createElement('div');
      text.className = 'alarm-text';
      text.textContent = alert.description || alert.name || alert.id;
      const where = document.createElement('div');
      where.className = 'muted';
      where.textContent = [alert.commune, alert.domain && t(`domains.${alert.domain}`)].filter(Boolean).join(' · ');
      item.append(head, text, where);
      if (alert.lastAction) {
        const last = document.createElement('div');
        last.className = 'last-action';
        last.textContent = `${t(`actions.${alert.lastAction.action}`)} ${t('who')} ${alert.lastAction.actor}`;
        item.append(last);
      }
      const open = () => this.open(alert.id);
      item.addEventListener('click', open);
      item.addEventListener('keydown', (event) => { if (event.key === 'Enter') open(); });
      this.list.append(item);
    }
  }

  async open(id) {
    this.onOpen?.();
    await this.panel.show({ id, context: ALERT_CONTEXT });
  }

  /** The panel of an Alert: attributes, actions and the audit trail. */
  async renderAlert(entity, target, request = null) {
    const summary = this.alerts.find((a) => a.id === entity.id);
    const state = entity.workflowState?.value || 'new';
    const box = document.createElement('section');
    box.className = 'alarm-actions';
    box.setAttribute('data-testid', 'alarm-actions');
    if (summary?.location) {
      const locate = document.createElement('button');
      locate.type = 'button';
      locate.textContent = t('locate');
      locate.addEventListener('click', () => this.onLocate(summary.location));
      box.append(locate);
    }
    if (!this.canAct()) {
      box.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: t('readOnly') }));
    } else {
      const comment = Object.assign(document.createElement('textarea'), { rows: 2, maxLength: 2000 });
      comment.setAttribute('data-testid', 'action-comment');
      comment.placeholder = t('comment');
      const assignee = Object.assign(document.createElement('input'), { placeholder: t('assignee') });
      assignee.setAttribute('data-testid', 'action-assignee');
      const shelve = document.createElement('select');
      shelve.setAttribute('data-testid', 'action-shelve-for');
      for (const minutes of SHELVE_CHOICES) {
        const option = document.createElement('option');
        option.value = String(minutes);
        option.textContent = minutes < 60 ? t('minutes', { n: minutes }) : t('hours', { n: minutes / 60 });
        shelve.append(option);
      }
      const error = Object.assign(document.createElement('p'), { className: 'error' });
      error.setAttribute('role', 'alert');
      const buttons = document.createElement('div');
      buttons.className = 'buttons';
      for (const [action, from] of Object.entries(ALLOWED)) {
        if (!from.includes(state)) continue;
        const button = document.createElement('button');
        button.type = 'button';
        button.dataset.action = action;
        button.textContent = t(`actions.${action}`);
        button.addEventListener('click', async () => {
          error.textContent = '';
          if (NEEDS_COMMENT.has(action) && !comment.value.trim()) {
            error.textContent = `${t('comment')} ?`;
            comment.focus();
            return;
          }
          const body = { action, comment: comment.value };
          if (action === 'assign') body.assignee = assignee.value;
          if (action === 'shelve') body.shelvedUntil = new Date(Date.now() + Number(shelve.value) * 60000).toISOString();
          button.disabled = true;
          try {
            await postJson(`/console/api/alerts/${encodeURIComponent(entity.id)}/actions`, body);
            await this.refresh();
            await this.panel.show(target);
          } catch (failure) {
            error.textContent = `${t('actionFailed')} : ${failure.message}`;
            button.disabled = false;
          }
        });
        buttons.append(button);
      }
      const labelled = (text, input) => {
        const label = document.createElement('label');
        label.append(Object.assign(document.createElement('span'), { textContent: text }), input);
        return label;
      };
      if (ALLOWED.assign.includes(state)) box.append(labelled(t('assignee'), assignee));
      if (ALLOWED.shelve.includes(state)) box.append(labelled(t('shelveFor'), shelve));
      if (buttons.children.length) box.append(labelled(t('comment'), comment), buttons, error);
    }
    const trail = document.createElement('section');
    trail.className = 'audit';
    trail.setAttribute('data-testid', 'audit-trail');
    trail.append(Object.assign(document.createElement('h3'), { textContent: t('history') }));
    const list = document.createElement('ol');
    try {
      const history = await getJson(`/console/api/alerts/${encodeURIComponent(entity.id)}/history`);
      for (const action of history.actions.slice().reverse()) {
        const item = document.createElement('li');
        item.textContent = `${fmtDate(action.at)} — ${t(`actions.${action.action}`)} ${t('who')} ${action.actor}`
          + (action.comment ? ` : « ${action.comment} »` : '');
        list.append(item);
      }
    } catch (failure) {
      list.append(Object.assign(document.createElement('li'), { className: 'error', textContent: failure.message }));
    }
    trail.append(list);
    const extra = document.createElement('div');
    extra.append(box, trail);
    await this.panel.render(entity, target, extra, request);
  }

  /** The audio context must be created from a user gesture (the sign-in click). */
  unlockAudio() {
    try { this.audio = this.audio || new AudioContext(); } catch { this.audio = null; }
  }

  beep() {
    const audio = this.audio;
    if (!audio) return;
    if (audio.state === 'suspended') audio.resume();
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.type = 'square';
    oscillator.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.6);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start();
    oscillator.frequency.setValueAtTime(660, audio.currentTime + 0.3);
    oscillator.stop(audio.currentTime + 0.6);
    window.cityvisorConsole.beeps = (window.cityvisorConsole.beeps || 0) + 1;
  }
}
