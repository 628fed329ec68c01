// The nodes, the Secrets (names and keys, never a value: kukeond never sends one) and
// the search across everything the page knows.

import { cellHref } from './tree.js';
import { age, badge, bytes, fill, h, table } from './dom.js';

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
    super(store, main, ['realms', 'spaces', 'stacks', 'cells', 'nodes'], `Search: ${query}`);
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
