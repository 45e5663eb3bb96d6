// Talking to the server: the signed-in session (sessionStorage), authenticated fetch, the SSE
// stream read with fetch() so that the Authorization header is sent.
const KEY = 'cityvisor.session';
const LINK_REL = 'http://www.w3.org/ns/json-ld#context';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export const session = {
  load() {
    try { return JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch { return null; }
  },
  save(value) { sessionStorage.setItem(KEY, JSON.stringify(value)); },
  clear() { sessionStorage.removeItem(KEY); },
};

/** Headers of every request: the bearer token (or, in demo mode, the operator's name). */
export function authHeaders(current = session.load()) {
  const headers = {};
  if (!current) return headers;
  if (current.token) headers.Authorization = `Bearer ${current.token}`;
  // demo mode only (the server ignores it when tokens are on); percent-encoded: names have accents
  if (current.name && !current.token) headers['X-Cityvisor-Operator'] = encodeURIComponent(current.name);
  if (current.tenant) headers['NGSILD-Tenant'] = current.tenant;
  return headers;
}

async function parse(response) {
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function getJson(url, { context, headers = {}, current } = {}) {
  const all = { Accept: 'application/json', ...authHeaders(current), ...headers };
  if (context) all.Link = `<${context}>; rel="${LINK_REL}"; type="application/ld+json"`;
  return parse(await fetch(url, { headers: all }));
}

export async function postJson(url, body) {
  return parse(await fetch(url, {
    method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeaders() },
  }));
}

/**
 * Follow /console/api/events: calls onEvents(array) per message, onState('live'|'off') on
 * (dis)connection, onResync() when the server dropped events, onSignedOut() when the token
 * was revoked; reconnects with backoff.
 * Returns a function that stops it.
 */
export function followEvents({ onEvents, onState, onResync, onSignedOut }) {
  let stopped = false;
  let controller = null;
  let delay = 500;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch('/console/api/events', {
          headers: { Accept: 'text/event-stream', ...authHeaders() }, signal: controller.signal });
        if (!response.ok) throw new ApiError(response.status, null);
        onState('live');
        delay = 500;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            handle(block);
          }
        }
      } catch (error) {
        if (stopped) return;
      }
      onState('off');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }
  function handle(block) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trim());
    }
    if (event === 'resync') onResync();
    else if (event === 'signedout') { stopped = true; onSignedOut?.(); }
    else if (event === 'message' && data.length) {
      try { onEvents(JSON.parse(data.join('\n'))); } catch (error) { console.error(error); }
    }
  }
  run();
  return () => { stopped = true; controller?.abort(); };
}
