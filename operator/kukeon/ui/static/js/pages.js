// The nodes, the cell sets (kubectl's deployments: counts, rollout, their cells; scale
// and restart for whoever may write), the Secrets (names and keys, never a value:
// kukeond never sends one) and the search across everything the page knows.

import { ApiError, MERGE_PATCH, call, collection } from './api.js';
import { canWrite } from './actions.js';
import { cellHref } from './tree.js';
import { setHref } from './cellset.js';
import { age, announce, badge, bytes, enc, fill, h, table } from './dom.js';

class LiveTable {
  constructor(store, main, kinds, title) {
    this.store = store;
    this.kinds = kinds;
    this.body = h('div');
    fill(main, h('h1', null, title), this.body);
    this.unsubscribe = store.subscribe((changes) => { if (kinds.some((kind) => changes.has(kind))) this.render(); });
    this.releaseKinds = store.acquire(kinds);
    this.render();
  }

  render() {
    const error = this.store.error(...this.kinds);
    if (!this.store.loaded(...this.kinds)) { fill(this.body, error ? `Cannot list: ${error.message}` : 'Loading…'); return; }
    fill(this.body, this.content());
  }

  close() { this.unsubscribe(); this.releaseKinds(); }
}

export class NodesView extends LiveTable {
  constructor(store, main) { super(store, main, ['nodes', 'cells'], 'Nodes'); }

  content() {
    const cellsOn = new Map();
    for (const [key, cell] of this.store.items('cells')) {
      const node = (cell.status && cell.status.nodeName) || (cell.spec && cell.spec.nodeName) || '';
      if (!cellsOn.has(node)) cellsOn.set(node, []);
      cellsOn.get(node).push(key);
    }
    const rows = [...this.store.items('nodes').values()].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1)).map((node) => {
      const status = node.status || {};
      const capacity = status.capacity || {};
      const labels = Object.entries(node.metadata.labels || {});
      const cells = (cellsOn.get(node.metadata.name) || []).sort();
      return h('tr', null,
        h('th', { scope: 'row' }, node.metadata.name), h('td', null, badge(status.state || 'Unknown')),
        h('td', null, node.spec && node.spec.unschedulable ? badge('Cordoned', 'wait') : 'no'),
        h('td', null, labels.map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`))),
        h('td', null, `${capacity.cpus || 0} CPUs · ${bytes(capacity.memoryBytes || 0)}`),
        h('td', null, status.lastHeartbeatTime ? `${age(status.lastHeartbeatTime)} ago` : '–'),
        h('td', null, h('details', null, h('summary', null, `${cells.length} cells`),
          h('ul', { class: 'plain' }, cells.slice(0, 200).map((key) => h('li', null, h('a', { href: cellHref(key) }, key)))))));
    });
    return table(['Node', 'State', 'Cordoned', 'Labels', 'Capacity', 'Heartbeat', 'Cells'], rows);
  }
}

const SET_LABEL = 'kukeon.io/cellset';

function condition(set, type) {
  return ((set.status && set.status.conditions) || []).find((c) => c.type === type) || {};
}

// Scale and restart, as kukectl scale and rollout restart do (merge patches of the set).
// The controls are made once per set and kept across renders: a status written while the
// user types must not swap the input under the cursor.
class SetActions {
  constructor(key, set) {
    const [realm, space, stack, name] = key.split('/');
    this.path = `${collection('cellsets', [realm, space, stack])}/${enc(name)}`;
    this.name = name;
    this.output = h('span', { class: 'error', role: 'alert' });
    this.replicas = h('input', { type: 'number', min: '0', max: '10000', value: String(set.spec.replicas), 'aria-label': `replicas of ${name}`, class: 'replicas' });
    const scale = h('button', { type: 'button', class: 'secondary', onclick: () => this.patch({ spec: { replicas: Number(this.replicas.value) } }, `scaled to ${this.replicas.value}`) }, 'Scale');
    const restart = h('button', { type: 'button', class: 'secondary', onclick: () => this.patch({ spec: { template: { metadata: { annotations: { 'kukeon.io/restartedAt': new Date().toISOString() } } } } }, 'restarted') }, 'Restart');
    this.element = h('div', { class: 'actions' }, this.replicas, scale, restart, this.output);
  }

  async patch(body, done) {
    this.output.textContent = '';
    try {
      await call('PATCH', this.path, { body, contentType: MERGE_PATCH });
      announce(`cell set ${this.name} ${done}`);
    } catch (error) {
      this.output.textContent = error instanceof ApiError ? `refused (${error.code}): ${error.message}` : String(error);
    }
  }
}

function rolloutClass(progressing) {
  if (progressing.status === 'False') return 'bad';
  return progressing.reason === 'CellSetAvailable' ? 'ok' : 'wait';
}

export class SetsView extends LiveTable {
  constructor(store, main, me) {
    super(store, main, ['cellsets', 'cells'], 'Cell sets');
    this.me = me;
    this.actions = new Map();
    this.render();
  }

  content() {
    if (this.me === undefined) return null;
    const cellsOf = new Map();
    for (const [key, cell] of this.store.items('cells')) {
      const set = (cell.metadata.labels || {})[SET_LABEL];
      if (!set) continue;
      const setKey = [...key.split('/').slice(0, 3), set].join('/');
      if (!cellsOf.has(setKey)) cellsOf.set(setKey, []);
      cellsOf.get(setKey).push([key, cell]);
    }
    const sets = [...this.store.items('cellsets').entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const rows = sets.map(([key, set]) => {
      const status = set.status || {};
      const progressing = condition(set, 'Progressing');
      const cells = (cellsOf.get(key) || []).sort(([a], [b]) => (a < b ? -1 : 1));
      let actions = this.actions.get(key);
      if (!actions && canWrite(this.me, set.spec.realmId)) this.actions.set(key, actions = new SetActions(key, set));
      return h('tr', { 'data-set': key },
        h('th', { scope: 'row' }, h('a', { href: setHref(key) }, set.metadata.name)), h('td', null, key.split('/').slice(0, 3).join('/')),
        h('td', null, `${status.readyReplicas || 0}/${set.spec.replicas}`),
        h('td', null, String(status.updatedReplicas || 0)), h('td', null, String(status.availableReplicas || 0)),
        h('td', { title: progressing.message || '' }, badge(progressing.reason || 'Unknown', rolloutClass(progressing))),
        h('td', null, h('details', null, h('summary', null, `${cells.length} cells`),
          h('ul', { class: 'plain' }, cells.map(([cellKey, cell]) => h('li', null,
            h('a', { href: cellHref(cellKey) }, cell.metadata.name), ' ', badge((cell.status && cell.status.state) || 'Unknown')))))),
        h('td', null, actions ? actions.element : h('span', { class: 'muted' }, 'read only')));
    });
    if (!rows.length) return h('p', null, 'No cell sets.');
    return table(['Set', 'Stack', 'Ready', 'Up to date', 'Available', 'Rollout', 'Cells', ''], rows);
  }
}

export class SecretsView extends LiveTable {
  constructor(store, main) { super(store, main, ['secrets'], 'Secrets'); }

  content() {
    const rows = [...this.store.items('secrets').entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, secret]) => {
      const [realm, space, stack] = key.split('/');
      const keys = ((secret.status && secret.status.keys) || []).map((k) => h('code', { class: 'chip' }, k.name));
      return h('tr', null, h('th', { scope: 'row' }, secret.metadata.name), h('td', null, realm), h('td', null, space), h('td', null, stack), h('td', null, keys));
    });
    return [h('p', { class: 'muted' }, 'Names and keys only: values never leave kukeond.'),
      table(['Secret', 'Realm', 'Space', 'Stack', 'Keys'], rows)];
  }
}

export class SearchView extends LiveTable {
  constructor(store, main, query) {
    // The query is a link's text: shown in the search field, where it reads as a query,
    // not as the page's heading (a crafted link titled the page with its own sentence).
    super(store, main, ['realms', 'spaces', 'stacks', 'cells', 'nodes'], 'Search');
    const field = document.getElementById('search');
    if (field && document.activeElement !== field) field.value = query;
    this.query = query.toLowerCase();
    this.render();
  }

  content() {
    if (this.query === undefined) return null;
    const found = [];
    for (const kind of ['cells', 'stacks', 'spaces', 'realms', 'nodes']) {
      for (const [key, object] of this.store.items(kind)) {
        const labels = Object.entries(object.metadata.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ');
        if (!`${key} ${labels}`.toLowerCase().includes(this.query)) continue;
        const target = kind === 'cells' ? h('a', { href: cellHref(key) }, key) : key;
        found.push(h('tr', null, h('td', null, kind.slice(0, -1)), h('th', { scope: 'row' }, target), h('td', null, badge((object.status && object.status.state) || 'Unknown'))));
        if (found.length >= 500) break;
      }
    }
    return found.length ? table(['Kind', 'Name', 'State'], found) : h('p', null, 'Nothing matches.');
  }
}
