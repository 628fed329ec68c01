// What the page knows of the fleet, kept live: a list, then a watch from the list's
// resourceVersion (as kukectl get -w and the controllers' informers do); a watch that
// ends or is refused (410 after compaction) lists again. Changes reach the views once
// per animation frame, whatever number of events arrived, so 1,000 cells cost one render.
//
// A browser opens at most six HTTP/1.1 connections to one server and a watch holds one
// for as long as it runs, so only the kinds the current view needs are watched: a view
// acquires its kinds and releases them when it closes (the next view acquires first, so
// a kind both need is not listed again).

import { ApiError, collection, call, lines, sleep } from './api.js';

export function keyOf(kind, object) {
  const meta = object.metadata || {};
  const spec = object.spec || {};
  switch (kind) {
    case 'spaces': return [spec.realmId, meta.name].join('/');
    case 'stacks': return [spec.realmId, spec.spaceId, meta.name].join('/');
    case 'cells':
    case 'cellsets': return [spec.realmId, spec.spaceId, spec.stackId, meta.name].join('/');
    case 'secrets': return [meta.realm, meta.space || '-', meta.stack || '-', meta.name].join('/');
    default: return meta.name;
  }
}

class Watcher {
  constructor(store, kind) {
    this.store = store;
    this.kind = kind;
    this.items = new Map();
    this.loaded = false;
    this.error = null;
    this.abort = new AbortController();
    this.run();
  }

  async run() {
    const signal = this.abort.signal;
    let delay = 500;
    while (!signal.aborted) {
      try {
        const listed = await call('GET', collection(this.kind), { signal });
        this.items = new Map((listed.items || []).map((item) => [keyOf(this.kind, item), item]));
        this.loaded = true;
        this.error = null;
        this.store.changed(this.kind);
        const since = listed.metadata.resourceVersion;
        const url = `${collection(this.kind)}?watch=true&allowWatchBookmarks=true&resourceVersion=${since}`;
        for await (const line of lines(url, signal)) {
          if (line.trim()) this.apply(JSON.parse(line));
          delay = 500;
        }
      } catch (error) {
        if (signal.aborted) return;
        this.error = error;
        this.store.changed(this.kind);
        if (error instanceof ApiError && error.code === 401) return;
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 10000);
    }
  }

  apply(event) {
    const object = event.object || {};
    if (event.type === 'ERROR') throw new ApiError(object.code || 500, object);
    if (event.type === 'BOOKMARK') return;
    const key = keyOf(this.kind, object);
    if (event.type === 'DELETED') this.items.delete(key);
    else this.items.set(key, object);
    this.store.changed(this.kind, key);
  }
}

const NOTHING = Object.freeze({ items: new Map(), loaded: false, error: null });

export class Store {
  constructor() {
    this.watchers = new Map();
    this.users = new Map();
    this.listeners = new Set();
    this.pending = new Map();
    this.frame = 0;
  }

  ensure(kind) {
    if (!this.watchers.has(kind)) this.watchers.set(kind, new Watcher(this, kind));
    return this.watchers.get(kind);
  }

  acquire(kinds) {
    for (const kind of kinds) {
      this.users.set(kind, (this.users.get(kind) || 0) + 1);
      this.ensure(kind);
    }
    return () => this.release(kinds);
  }

  release(kinds) {
    for (const kind of kinds) {
      const left = (this.users.get(kind) || 0) - 1;
      this.users.set(kind, left);
      if (left > 0) continue;
      const watcher = this.watchers.get(kind);
      if (watcher) watcher.abort.abort();
      this.watchers.delete(kind);
    }
  }

  // Reading never starts a watch: a kind nobody acquired reads as empty and not loaded.
  peek(kind) { return this.watchers.get(kind) || NOTHING; }
  items(kind) { return this.peek(kind).items; }
  get(kind, key) { return this.peek(kind).items.get(key); }
  loaded(...kinds) { return kinds.every((kind) => this.peek(kind).loaded); }
  error(...kinds) { return kinds.map((kind) => this.peek(kind).error).find(Boolean) || null; }

  changed(kind, key) {
    if (!this.pending.has(kind)) this.pending.set(kind, new Set());
    this.pending.get(kind).add(key === undefined ? '*' : key);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const changes = this.pending;
    this.pending = new Map();
    for (const listener of [...this.listeners]) listener(changes);
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close() {
    for (const watcher of this.watchers.values()) watcher.abort.abort();
    this.watchers.clear();
    this.listeners.clear();
  }
}
