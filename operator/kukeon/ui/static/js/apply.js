// A pasted manifest: kukeond reads it into documents (/ui/manifest), then each is written
// through the API (create, or replace when it exists), parents first. "Validate" runs the
// same writes with dryRun=All. Every error the server gives is shown next to its field.

import { ApiError, call } from './api.js';
import { canWrite } from './actions.js';
import { fill, h } from './dom.js';

const ORDER = ['Realm', 'Space', 'Stack', 'Node', 'Secret', 'CellProfile', 'Cell', 'CellSet'];

function causeList(causes) {
  return h('ul', { class: 'causes' }, causes.map((cause) => h('li', null,
    cause.field ? h('code', { class: 'field' }, cause.field) : null, cause.field ? ' ' : null, cause.message)));
}

// The server says what to write, by the rule kukectl apply follows (/ui/apply-update,
// kukeon.api.applying): a new object carries the manifest recorded in its annotation
// kukeon.io/last-applied-configuration; over one that exists, the three-way merge of that
// record, the manifest and the object read, so what others wrote and the manifest never
// named (a cell's nodeName, a kukectl label) stays. The write is guarded by the version
// read: another write in between is read again.
const ATTEMPTS = 6;

function pause(attempt) {
  const ms = Math.min(10 * 2 ** (attempt - 1), 500) * (0.5 + Math.random() / 2);
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

function ask(entry, current) {
  return call('POST', '/ui/apply-update', { body: { document: entry.document, current } });
}

async function write(entry, dryRun) {
  const suffix = dryRun ? '?dryRun=All' : '';
  const { create } = await ask(entry, null);
  try {
    await call('POST', entry.collection + suffix, { body: create });
    return 'created';
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== 409) throw error;
  }
  let lost = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt += 1) {
    if (attempt) await pause(attempt);
    const current = await call('GET', entry.object);
    const { update } = await ask(entry, current);
    if (!update) return 'unchanged';
    try {
      await call('PUT', entry.object + suffix, { body: update });
      return 'configured';
    } catch (error) {
      if (!(error instanceof ApiError) || error.reason !== 'Conflict') throw error;
      lost = error;
    }
  }
  throw lost;
}

function label(entry) {
  return `${entry.kind || 'document'} ${entry.name || `#${entry.index + 1}`}`;
}

export class ApplyView {
  constructor(main, me) {
    this.me = me;
    this.text = h('textarea', { id: 'manifest', rows: '16', spellcheck: 'false', 'aria-label': 'Manifest (YAML or JSON)',
      placeholder: 'apiVersion: kukeon.io/v1beta1\nkind: Cell\n…' });
    this.results = h('div', { id: 'apply-results', role: 'status', 'aria-live': 'polite' });
    if (!me.writes) {
      // The server validates a manifest by writing it with dryRun=All, and a dry run is
      // authorized as the write it stands for: a viewer's Validate was a 403 per document.
      fill(main, h('h1', null, 'Apply a manifest'),
        h('p', { class: 'muted role-note', id: 'apply-read-only' },
          `read only (${me.role}): validating a manifest writes it as a dry run, and this role may not write.`));
      return;
    }
    fill(main, h('h1', null, 'Apply a manifest'),
      h('p', { class: 'muted' }, 'Paste one or more documents (--- between them). Validate asks the server without writing.'),
      this.text,
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'validate', class: 'secondary', onclick: () => this.run(true) }, 'Validate'),
        h('button', { type: 'button', id: 'apply', onclick: () => this.run(false) }, 'Apply')),
      this.results);
  }

  async run(dryRun) {
    fill(this.results, 'Working…');
    let entries;
    try {
      entries = (await call('POST', '/ui/manifest', { body: this.text.value, contentType: 'text/plain' })).documents;
    } catch (error) {
      fill(this.results, h('p', { class: 'error' }, error.message));
      return;
    }
    const unreadable = entries.filter((entry) => entry.causes.length);
    const items = unreadable.map((entry) => h('li', { class: 'failed' }, h('strong', null, label(entry)), causeList(entry.causes)));
    if (!unreadable.length) {
      entries.sort((a, b) => ORDER.indexOf(a.kind) - ORDER.indexOf(b.kind));
      for (const entry of entries) {
        try {
          const outcome = await write(entry, dryRun);
          items.push(h('li', { class: 'done' }, `${label(entry)} ${outcome}${dryRun ? ' (dry run)' : ''}`));
        } catch (error) {
          const causes = error.causes && error.causes.length ? error.causes : [];
          items.push(h('li', { class: 'failed' }, h('strong', null, label(entry)), ` refused (${error.code || ''}): ${error.message}`, causeList(causes)));
          if (!dryRun) break;
        }
      }
    }
    fill(this.results, entries.length ? h('ul', { class: 'outcomes' }, items) : h('p', null, 'No documents.'));
  }

  close() {}
}
