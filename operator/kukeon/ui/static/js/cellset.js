// One cell set (kukectl describe cellset): its spec and counts, conditions, cells (the
// template each was made from, current or old), revisions and Events (live: the set
// controller's SuccessfulCreate, SuccessfulDelete, FailedCreate). Read only: scale and
// restart are on the cell sets list, for whoever may write the set's realm.

import { watchEvents } from './api.js';
import { age, badge, enc, fill, h, section, table } from './dom.js';
import { cellHref } from './tree.js';

const SET_LABEL = 'kukeon.io/cellset';
const HASH_LABEL = 'kukeon.io/template-hash';

export function setHref(key) {
  return `#/set/${key.split('/').map(enc).join('/')}`;
}

function strategyText(strategy) {
  const type = (strategy && strategy.type) || 'RollingUpdate';
  if (type !== 'RollingUpdate') return type;
  const rolling = strategy.rollingUpdate || {};
  return `${type} (max surge ${rolling.maxSurge ?? '25%'}, max unavailable ${rolling.maxUnavailable ?? '25%'})`;
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, value]) => value !== '' && value !== undefined && value !== null)
    .map(([name, value]) => [h('dt', null, name), h('dd', null, value)]));
}

export class SetView {
  constructor(store, main, key) {
    this.store = store;
    this.key = key;
    [this.realm, this.space, this.stack, this.name] = key.split('/');
    this.abort = new AbortController();
    this.badge = h('span');
    this.summary = h('div', { id: 'set-summary' });
    this.conditions = h('div', { id: 'set-conditions' });
    this.cells = h('div', { id: 'set-cells' });
    this.revisions = h('div', { id: 'set-revisions' });
    this.events = h('div', { id: 'set-events' });
    this.eventsSeen = new Map();
    this.eventsError = null;
    // The set's own name once it is read, not the address's (a link's text: see CellView).
    this.title = h('h1', null, 'Cell set');
    fill(main,
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/sets' }, 'Cell sets'), ` / ${this.realm} / ${this.space} / ${this.stack}`),
      h('div', { class: 'cell-head' }, this.title, this.badge, h('span', { class: 'muted role-note' }, 'read only')),
      section('Spec and counts', this.summary), section('Conditions', this.conditions),
      section('Cells', this.cells), section('Events', this.events), section('Revisions', this.revisions));
    this.unsubscribe = store.subscribe((changes) => {
      if (changes.has('cellsets') || changes.has('cells')) this.render();
    });
    this.releaseKinds = store.acquire(['cellsets', 'cells']);
    this.render();
    const involved = { kind: 'CellSet', name: this.name, space: this.space, stack: this.stack };
    watchEvents(this.realm, involved, this.abort.signal, (type, event) => this.showEvent(type, event),
      (error) => { this.eventsError = error; this.renderEvents(); });
  }

  render() {
    const set = this.store.get('cellsets', this.key);
    if (!set) {
      const error = this.store.error('cellsets');
      fill(this.title, 'Cell set');
      const loaded = this.store.loaded('cellsets');
      fill(this.badge, loaded ? badge('Not found', 'bad') : (error ? `Cannot list: ${error.message}` : 'Loading…'));
      fill(this.summary, loaded ? h('p', { class: 'muted' }, 'No cell set at ', h('code', null, this.key)) : null);
      return;
    }
    fill(this.title, set.metadata.name);
    const spec = set.spec || {};
    const status = set.status || {};
    const conditions = status.conditions || [];
    const progressing = conditions.find((c) => c.type === 'Progressing') || {};
    fill(this.badge, badge(progressing.reason || 'Unknown', progressing.status === 'False' ? 'bad' : (progressing.reason === 'CellSetAvailable' ? 'ok' : 'wait')));
    const selector = Object.entries((spec.selector && spec.selector.matchLabels) || {}).map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`));
    fill(this.summary, facts([
      ['Replicas', `${spec.replicas} desired · ${status.readyReplicas || 0} ready · ${status.updatedReplicas || 0} updated · ${status.availableReplicas || 0} available`],
      ['Template hash', status.templateHash ? h('code', null, status.templateHash) : ''],
      ['Strategy', strategyText(spec.strategy)],
      ['Selector', selector.length ? selector : ''],
      ['Profile', spec.profile || ''],
      ['Generation', `${set.metadata.generation || 0} (observed ${status.observedGeneration || 0})`],
      ['Created', set.metadata.creationTimestamp ? `${age(set.metadata.creationTimestamp)} ago` : ''],
    ]));
    fill(this.conditions, conditions.length ? table(['Type', 'Status', 'Reason', 'Message', 'Age'], conditions.map((c) => h('tr', null,
      h('th', { scope: 'row' }, c.type), h('td', null, badge(c.status, c.status === 'True' ? 'ok' : (c.type === 'ReplicaFailure' ? 'bad' : 'wait'))),
      h('td', null, c.reason || ''), h('td', null, c.message || ''), h('td', null, age(c.lastTransitionTime)))))
      : h('p', { class: 'muted' }, 'No conditions yet.'));
    this.renderCells(status.templateHash);
    const revisions = [...(status.revisions || [])].reverse();
    fill(this.revisions, revisions.length ? table(['Revision', 'Template hash', 'Change cause'], revisions.map((r) => h('tr', null,
      h('th', { scope: 'row' }, String(r.revision)),
      h('td', null, h('code', null, r.templateHash), r.templateHash === status.templateHash ? [' ', badge('current', 'ok')] : null),
      h('td', null, r.changeCause || ''))))
      : h('p', { class: 'muted' }, 'No revisions yet.'));
  }

  renderCells(current) {
    const cells = [...this.store.items('cells').entries()].filter(([cellKey, cell]) => {
      const labels = cell.metadata.labels || {};
      return labels[SET_LABEL] === this.name && cellKey.startsWith(`${this.realm}/${this.space}/${this.stack}/`);
    }).sort(([a], [b]) => (a < b ? -1 : 1));
    fill(this.cells, cells.length ? table(['Cell', 'State', 'Node', 'Template hash'], cells.map(([cellKey, cell]) => {
      const hash = (cell.metadata.labels || {})[HASH_LABEL] || '';
      const status = cell.status || {};
      return h('tr', { 'data-cell': cellKey },
        h('th', { scope: 'row' }, h('a', { href: cellHref(cellKey) }, cell.metadata.name)),
        h('td', null, badge(status.state || 'Pending')),
        h('td', null, status.nodeName || (cell.spec && cell.spec.nodeName) || ''),
        h('td', null, h('code', null, hash), ' ', hash && hash === current ? badge('current', 'ok') : badge('old', 'idle')));
    })) : h('p', { class: 'muted' }, 'No cells.'));
  }

  showEvent(type, event) {
    this.eventsError = null;
    if (type === 'DELETED') this.eventsSeen.delete(event.metadata.name);
    else this.eventsSeen.set(event.metadata.name, event);
    this.renderEvents();
  }

  renderEvents() {
    const when = (event) => event.lastTimestamp || event.firstTimestamp || event.metadata.creationTimestamp || '';
    const events = [...this.eventsSeen.values()].sort((a, b) => (when(a) < when(b) ? 1 : -1)).slice(0, 100);
    fill(this.events,
      this.eventsError ? h('p', { class: 'muted' }, `Events: ${this.eventsError.message}`) : null,
      events.length ? table(['Type', 'Reason', 'Age', 'Count', 'Message'], events.map((event) => h('tr', { class: event.type === 'Warning' ? 'warning' : '' },
        h('td', null, event.type || 'Normal'), h('th', { scope: 'row' }, event.reason || ''), h('td', null, age(when(event))),
        h('td', null, String(event.count || 1)), h('td', null, event.message || ''))))
        : h('p', { class: 'muted' }, 'No Events.'));
  }

  close() {
    this.unsubscribe();
    this.releaseKinds();
    this.abort.abort();
  }
}
