// One cell: its actions (by role), status, containers with their probes, CPU and memory,
// Events (live), a log panel following a container's log, and its spec as YAML.

import { call, cellPath, lines, sleep, watchEvents } from './api.js';
import { CellActions } from './actions.js';
import { age, badge, bytes, enc, fill, h, section, table } from './dom.js';
import { readiness, restarts } from './tree.js';
import { toYaml } from './yaml.js';

// Characters of one log line shown (16 KiB: a container log's record); the panel keeps
// its last 2,000 lines, so a tenant's log can hold at most ~32 M characters of the tab.
const LOG_LINE_LIMIT = 16384;

function probeText(probe) {
  const failures = probe.consecutiveFailures ? ` (${probe.consecutiveFailures}× failed)` : '';
  return h('div', { class: 'probe' }, `${probe.probe}: `, badge(probe.result || 'Unknown'), failures,
    probe.message ? h('span', { class: 'muted' }, ` ${probe.message}`) : null);
}

function containerRows(cell) {
  const statuses = new Map(((cell.status && cell.status.containers) || []).map((c) => [c.id, c]));
  const ids = ((cell.spec && cell.spec.containers) || []).map((c) => c.id);
  for (const id of statuses.keys()) if (!ids.includes(id)) ids.push(id);
  return ids.map((id) => {
    const status = statuses.get(id) || {};
    const spec = ((cell.spec && cell.spec.containers) || []).find((c) => c.id === id) || {};
    // A restarted container runs: no exitCode of its own; how its previous run ended is lastState.
    const last = status.lastState;
    const exit = status.exitCode === null || status.exitCode === undefined
      ? (last ? h('span', { class: 'muted' }, `last ${last.exitCode}${last.reason ? ` (${last.reason})` : ''}`) : '')
      : String(status.exitCode);
    return h('tr', null,
      h('th', { scope: 'row' }, id), h('td', null, status.image || spec.image || ''),
      h('td', null, badge(status.state || 'Pending')), h('td', null, status.ready ? 'yes' : 'no'),
      h('td', null, String(status.restartCount || 0)), h('td', null, status.pid ? String(status.pid) : ''),
      h('td', null, exit), h('td', null, (status.probes || []).map(probeText),
        status.reason ? h('div', { class: 'muted' }, `${status.reason}${status.message ? `: ${status.message}` : ''}`) : null));
  });
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, value]) => value !== '' && value !== undefined && value !== null)
    .map(([name, value]) => [h('dt', null, name), h('dd', null, value)]));
}

export class CellView {
  constructor(store, main, me, key) {
    this.store = store;
    this.key = key;
    this.me = me;
    [this.realm, this.space, this.stack, this.name] = key.split('/');
    this.path = cellPath(this.realm, this.space, this.stack, this.name);
    this.abort = new AbortController();
    this.badge = h('span');
    this.actions = new CellActions(me, this.path, this.realm, this.name);
    // The heading is the cell's own name once it is read: the address is a link's text,
    // and a crafted link put whatever sentence it liked there as the page's title.
    this.title = h('h1', null, 'Cell');
    this.header = h('div', { class: 'cell-head' }, this.title, this.badge, this.actions.element);
    this.statusBox = h('div');
    this.containers = h('div');
    this.usage = h('p', { class: 'usage', id: 'usage' }, 'CPU and memory: …');
    this.events = h('ol', { class: 'events', id: 'events' });
    this.logPick = h('select', { id: 'log-container', 'aria-label': 'Container', onchange: () => this.follow() });
    this.logState = h('span', { class: 'muted', id: 'log-state' });
    this.log = h('pre', { class: 'log', id: 'log', tabindex: '0', 'aria-label': 'Log' });
    this.spec = h('pre', { class: 'yaml', id: 'spec' });
    this.eventItems = new Map();
    fill(main,
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tree' }, 'Fleet'), ` / ${this.realm} / ${this.space} / ${this.stack}`),
      this.header,
      h('div', { class: 'columns' },
        section('Status', this.statusBox, this.usage), section('Events', this.events)),
      section('Containers', this.containers),
      section('Log', h('div', { class: 'log-bar' }, h('label', { for: 'log-container' }, 'Container '), this.logPick, ' ', this.logState), this.log),
      section('Spec', this.spec));
    this.unsubscribe = store.subscribe((changes) => {
      if (changes.has('cells') && (changes.get('cells').has(key) || changes.get('cells').has('*'))) this.render();
    });
    this.releaseKinds = store.acquire(['cells']);
    this.render();
    this.follow();
    this.watchEvents();
    this.pollUsage();
  }

  render() {
    const cell = this.store.get('cells', this.key);
    if (!cell) {
      fill(this.title, 'Cell');
      const loaded = this.store.loaded('cells');
      fill(this.badge, loaded ? badge('Not found', 'bad') : 'Loading…');
      fill(this.statusBox, loaded ? h('p', { class: 'muted' }, 'No cell at ', h('code', null, this.key)) : null);
      this.actions.element.hidden = true;
      return;
    }
    fill(this.title, cell.metadata.name);
    const status = cell.status || {};
    fill(this.badge, badge(status.state || 'Pending'));
    this.actions.element.hidden = false;
    this.actions.update(cell);
    fill(this.statusBox, facts([
      ['State', status.state || 'Pending'], ['Ready', readiness(cell)], ['Restarts', String(restarts(cell))],
      ['Node', status.nodeName || (cell.spec && cell.spec.nodeName) || ''], ['Desired', cell.spec.desiredState || 'Running'],
      ['Reason', status.reason || ''], ['Message', status.message || ''],
      ['Address', (status.network && status.network.ipAddress) || ''],
      ['Generation', `${cell.metadata.generation || 0} (observed ${status.observedGeneration || 0})`],
      ['Created', cell.metadata.creationTimestamp ? `${age(cell.metadata.creationTimestamp)} ago` : ''],
    ]));
    fill(this.containers, table(['Container', 'Image', 'State', 'Ready', 'Restarts', 'PID', 'Exit', 'Probes'], containerRows(cell)));
    fill(this.spec, toYaml({ metadata: { name: cell.metadata.name, labels: cell.metadata.labels, annotations: cell.metadata.annotations }, spec: cell.spec }));
    const ids = (cell.spec.containers || []).map((c) => c.id);
    const shown = [...this.logPick.options].map((o) => o.value);
    if (ids.join('\n') !== shown.join('\n')) {
      const current = this.logPick.value;
      fill(this.logPick, ids.map((id) => h('option', { value: id, selected: id === current }, id)));
      if (!current && ids.length) this.follow();
    }
  }

  async follow() {
    if (this.logAbort) this.logAbort.abort();
    const container = this.logPick.value;
    if (!container) return;
    const abort = new AbortController();
    this.logAbort = abort;
    this.abort.signal.addEventListener('abort', () => abort.abort(), { once: true });
    fill(this.log);
    const url = `${this.path}/log?container=${enc(container)}&follow=true&tailLines=200`;
    while (!abort.signal.aborted) {
      fill(this.logState, `following ${container}`);
      try {
        for await (const line of lines(url, abort.signal, LOG_LINE_LIMIT)) this.logLine(line);
        fill(this.logState, `${container}: the log ended; following again`);
      } catch (error) {
        if (abort.signal.aborted) return;
        fill(this.logState, `${container}: ${error.message}`);
      }
      await sleep(2000, abort.signal);
      fill(this.log);
    }
  }

  logLine(line) {
    const atEnd = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
    this.log.append(document.createTextNode(`${line}\n`));
    while (this.log.childNodes.length > 2000) this.log.firstChild.remove();
    if (atEnd) this.log.scrollTop = this.log.scrollHeight;
  }

  watchEvents() {
    const involved = { kind: 'Cell', name: this.name, space: this.space, stack: this.stack };
    watchEvents(this.realm, involved, this.abort.signal, (type, event) => this.showEvent(type, event),
      (error) => fill(this.events, h('li', { class: 'muted' }, `Events: ${error.message}`)));
  }

  showEvent(type, event) {
    const id = event.metadata.name;
    const old = this.eventItems.get(id);
    if (old) old.remove();
    if (type === 'DELETED') { this.eventItems.delete(id); return; }
    const when = event.lastTimestamp || event.firstTimestamp || event.metadata.creationTimestamp;
    const item = h('li', { class: event.type === 'Warning' ? 'warning' : '' },
      h('span', { class: 'when' }, when ? age(when) : ''), ' ', h('strong', null, event.reason),
      event.count > 1 ? ` ×${event.count}` : '', ' ', event.message);
    item.dataset.when = when || '';
    this.eventItems.set(id, item);
    const later = [...this.events.children].find((other) => (other.dataset.when || '') < (when || ''));
    this.events.insertBefore(item, later || null);
    while (this.events.children.length > 100) this.events.lastChild.remove();
  }

  async pollUsage() {
    const signal = this.abort.signal;
    let last = null;
    while (!signal.aborted) {
      try {
        const stats = await call('GET', `${this.path}/stats`, { signal });
        const now = { cpu: stats.cpuUsageSeconds, at: Date.parse(stats.timestamp) };
        const cores = last && now.at > last.at ? (now.cpu - last.cpu) / ((now.at - last.at) / 1000) : null;
        fill(this.usage, `CPU ${cores === null ? '…' : `${Math.round(cores * 1000)}m`} · memory ${bytes(stats.memoryWorkingSetBytes)}`
          + (stats.memoryLimitBytes ? ` of ${bytes(stats.memoryLimitBytes)}` : '') + ` · ${stats.pids ?? 0} pids`);
        last = now;
        await sleep(cores === null ? 1000 : 2500, signal); // a rate needs two samples
        continue;
      } catch (error) {
        if (signal.aborted) return;
        fill(this.usage, `CPU and memory: not available (${error.message})`);
      }
      await sleep(2500, signal);
    }
  }

  close() {
    this.unsubscribe();
    this.releaseKinds();
    this.abort.abort();
  }
}
