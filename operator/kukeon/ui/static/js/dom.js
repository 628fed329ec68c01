// Building the page: every piece of text goes in as a text node, never as HTML, so a name
// like "<img onerror=...>" shows as those characters. Links are only ever the page's own.

const SAFE_HREF = /^(#|\/ui\/)/;

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'href' && !SAFE_HREF.test(String(value))) throw new Error('refused link');
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function enc(part) {
  return encodeURIComponent(part);
}

export function badge(text, kind) {
  const value = text || 'Unknown';
  return h('span', { class: `badge ${kind || stateClass(value)}` }, value);
}

export function stateClass(state) {
  switch (state) {
    case 'Ready': case 'Running': case 'Success': case 'True': return 'ok';
    case 'Pending': case 'Creating': case 'Starting': case 'Unknown': case 'Stopping': return 'wait';
    case 'Stopped': case 'Exited': case 'Deleting': return 'idle';
    // 'Waiting' (a container in its restart back-off, CrashLoopBackOff), 'Failed', ...: bad.
    default: return 'bad';
  }
}

export function age(timestamp) {
  if (!timestamp) return '';
  const seconds = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function bytes(value) {
  if (value === null || value === undefined) return '–';
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let shown = value;
  let unit = 0;
  while (shown >= 1024 && unit < units.length - 1) { shown /= 1024; unit += 1; }
  return `${shown.toFixed(unit === 0 ? 0 : 1)}${units[unit]}`;
}

export function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', null, title), ...children);
}

export function table(headers, rows, caption) {
  return h('div', { class: 'scroll' },
    h('table', null,
      caption ? h('caption', null, caption) : null,
      h('thead', null, h('tr', null, headers.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', null, rows)));
}

export function announce(text) {
  const live = document.getElementById('live');
  if (live) live.textContent = text;
}
