// The hierarchy: realms → spaces → stacks → cells, each with its state; cells with their
// readiness, restarts and node. Built once per structural change (an object added or
// removed); a cell that only changed has its own row updated in place.

import { badge, enc, fill, h } from './dom.js';

const KINDS = ['realms', 'spaces', 'stacks', 'cells'];

function sorted(map) {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function cellHref(key) {
  return `#/cell/${key.split('/').map(enc).join('/')}`;
}

export function readiness(cell) {
  const containers = (cell.status && cell.status.containers) || [];
  const ready = containers.filter((c) => c.ready).length;
  const total = ((cell.spec && cell.spec.containers) || []).length || containers.length;
  return `${ready}/${total}`;
}

export function restarts(cell) {
  return ((cell.status && cell.status.containers) || []).reduce((sum, c) => sum + (c.restartCount || 0), 0);
}

function cellCells(key, cell) {
  const status = cell.status || {};
  return [
    h('a', { href: cellHref(key), class: 'name' }, cell.metadata.name),
    badge(status.state || 'Pending'),
    h('span', { class: 'ready', title: 'ready containers' }, readiness(cell)),
    h('span', { class: 'restarts', title: 'restarts' }, `↻ ${restarts(cell)}`),
    h('span', { class: 'node' }, status.nodeName || (cell.spec && cell.spec.nodeName) || ''),
  ];
}

function group(label, object, children, depth) {
  const state = (object && object.status && object.status.state) || 'Unknown';
  return h('li', { class: `group depth${depth}` },
    h('div', { class: 'row head' }, h('span', { class: 'kind' }, label), h('span', { class: 'name' }, object ? object.metadata.name : '?'), badge(state)),
    h('ul', null, children));
}

export class TreeView {
  constructor(store, main) {
    this.store = store;
    this.main = main;
    this.rows = new Map();
    this.list = h('ul', { class: 'tree', 'aria-label': 'Realms, spaces, stacks and cells' });
    this.summary = h('p', { class: 'summary', id: 'tree-summary' });
    fill(main, h('h1', null, 'Fleet'), this.summary, this.list);
    this.unsubscribe = store.subscribe((changes) => this.update(changes));
    this.releaseKinds = store.acquire(KINDS);
    this.list.addEventListener('keydown', (event) => this.keys(event));
    this.render();
  }

  update(changes) {
    const structural = KINDS.some((kind) => changes.has(kind) && kind !== 'cells')
      || [...(changes.get('cells') || [])].some((key) => key === '*' || !this.rows.has(key) || !this.store.get('cells', key));
    if (structural) { this.render(); return; }
    for (const key of changes.get('cells') || []) {
      const row = this.rows.get(key);
      fill(row, cellCells(key, this.store.get('cells', key)));
    }
    this.count();
  }

  render() {
    const error = this.store.error(...KINDS);
    if (!this.store.loaded(...KINDS)) {
      fill(this.list, h('li', { class: 'muted' }, error ? `Cannot list: ${error.message}` : 'Loading…'));
      return;
    }
    const byParent = (kind, depth) => {
      const grouped = new Map();
      for (const [key, object] of sorted(this.store.items(kind))) {
        const parent = key.split('/').slice(0, depth).join('/');
        if (!grouped.has(parent)) grouped.set(parent, []);
        grouped.get(parent).push([key, object]);
      }
      return grouped;
    };
    const spaces = byParent('spaces', 1);
    const stacks = byParent('stacks', 2);
    const cells = byParent('cells', 3);
    this.rows = new Map();
    const cellRow = ([key, cell]) => {
      const row = h('div', { class: 'row cell', dataset: { key } }, cellCells(key, cell));
      this.rows.set(key, row);
      return h('li', null, row);
    };
    const realms = sorted(this.store.items('realms')).map(([realm, object]) => group('realm', object,
      (spaces.get(realm) || []).map(([space, spaceObject]) => group('space', spaceObject,
        (stacks.get(space) || []).map(([stack, stackObject]) => group('stack', stackObject,
          (cells.get(stack) || []).map(cellRow), 3)), 2)), 1));
    fill(this.list, realms.length ? realms : h('li', { class: 'muted' }, 'No realms yet.'));
    this.count();
  }

  count() {
    const cells = [...this.store.items('cells').values()];
    const ready = cells.filter((cell) => cell.status && cell.status.state === 'Ready').length;
    fill(this.summary, `${this.store.items('realms').size} realms · ${cells.length} cells · ${ready} ready`);
  }

  keys(event) {
    const links = [...this.list.querySelectorAll('a.name')];
    const at = links.indexOf(document.activeElement);
    let next = null;
    if (event.key === 'ArrowDown' || event.key === 'j') next = links[Math.min(at + 1, links.length - 1)];
    if (event.key === 'ArrowUp' || event.key === 'k') next = links[Math.max(at - 1, 0)];
    if (event.key === 'Home') next = links[0];
    if (event.key === 'End') next = links[links.length - 1];
    if (next) { event.preventDefault(); next.focus(); }
  }

  close() { this.unsubscribe(); this.releaseKinds(); }
}
