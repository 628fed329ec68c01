// The JSON API as the page uses it: the bearer token from this tab's sessionStorage on
// every request, errors as ApiError (the server's Status: code, message, field causes),
// newline-delimited streams (watches, followed logs) read as they come.

import { enc } from './dom.js';

const TOKEN_KEY = 'kukeon.token';
export const API = '/apis/kukeon.io/v1beta1';
export const MERGE_PATCH = 'application/merge-patch+json';

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) { sessionStorage.setItem(TOKEN_KEY, value); }
export function forgetToken() { sessionStorage.removeItem(TOKEN_KEY); }

export class ApiError extends Error {
  constructor(code, status) {
    super((status && status.message) || `HTTP ${code}`);
    this.code = code;
    this.causes = (status && status.details && status.details.causes) || [];
    this.reason = (status && status.reason) || '';
  }
}

function headers(contentType) {
  const result = {};
  const bearer = token();
  if (bearer) result.Authorization = `Bearer ${bearer}`;
  if (contentType) result['Content-Type'] = contentType;
  return result;
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) { onUnauthorized = callback; }

// A request the network drops before any answer (the host's addresses changed: Chromium
// aborts what is in flight when a bridge or a cell's veth comes up on this very host) is
// sent again, a few times; an answer, even an error, is never sent again.
async function send(path, init) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fetch(path, init);
    } catch (error) {
      if ((init.signal && init.signal.aborted) || attempt >= 4) throw error;
      await sleep(200 * attempt, init.signal);
    }
  }
}

export async function call(method, path, options = {}) {
  const { body, contentType, signal } = options;
  const text = body === undefined || typeof body === 'string' ? body : JSON.stringify(body);
  const response = await send(path, {
    method,
    headers: headers(body === undefined ? null : contentType || 'application/json'),
    body: text,
    signal,
    cache: 'no-store',
    credentials: 'omit',
  });
  const raw = await response.text();
  let document = null;
  try { document = raw ? JSON.parse(raw) : null; } catch { document = { message: raw }; }
  if (!response.ok) {
    if (response.status === 401) onUnauthorized();
    throw new ApiError(response.status, document);
  }
  return document;
}

// A line over maxLength characters (a container may print megabytes without a newline) is
// yielded once, cut, and the rest of it dropped up to its end; each chunk is searched for
// newlines on its own: a line without end, kept whole and searched again with every chunk,
// took the tab's memory and froze it.
export async function* lines(path, signal, maxLength = Infinity) {
  const response = await send(path, { headers: headers(null), signal, cache: 'no-store', credentials: 'omit' });
  if (!response.ok) {
    let document = null;
    try { document = await response.json(); } catch { document = null; }
    if (response.status === 401) onUnauthorized();
    throw new ApiError(response.status, document);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  let cut = false; // the line under way was yielded cut: its rest is dropped
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (let start = 0; ;) {
      const end = value.indexOf('\n', start);
      if (!cut) pending += value.slice(start, end === -1 ? value.length : end);
      if (!cut && pending.length > maxLength) {
        yield `${pending.slice(0, maxLength)} … [the rest of this line, over ${maxLength} characters, is not shown]`;
        pending = '';
        cut = true;
      }
      if (end === -1) break;
      if (!cut) yield pending;
      pending = '';
      cut = false;
      start = end + 1;
    }
  }
  if (pending && !cut) yield pending;
}

export function collection(plural, scope = []) {
  const parents = ['realms', 'spaces', 'stacks'];
  return API + scope.map((name, index) => `/${parents[index]}/${enc(name)}`).join('') + `/${plural}`;
}

export function cellPath(realm, space, stack, cell) {
  return `${collection('cells', [realm, space, stack])}/${enc(cell)}`;
}

// A field selector's value as the server (and Kubernetes' apimachinery) reads it: a name
// taken from the page's address must not add terms of its own.
export function fieldValue(value) {
  return String(value).replace(/[\\,=]/g, (c) => `\\${c}`);
}

// A realm's Events about one object ({kind, name, space, stack}: the involvedObject fields
// to match), live (a watch opened again when it ends); onEvent(type, event) for each,
// onError(error) when the watch fails.
export async function watchEvents(realm, involved, signal, onEvent, onError) {
  const selector = Object.entries(involved)
    .map(([field, value]) => `involvedObject.${field}=${fieldValue(value)}`).join(',');
  const url = `${collection('events', [realm])}?watch=true&fieldSelector=${enc(selector)}`;
  while (!signal.aborted) {
    try {
      for await (const line of lines(url, signal)) {
        if (!line.trim()) continue;
        const event = JSON.parse(line);
        if (event.type === 'BOOKMARK' || event.type === 'ERROR') continue;
        onEvent(event.type, event.object);
      }
    } catch (error) {
      if (signal.aborted) return;
      onError(error);
    }
    await sleep(3000, signal);
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
