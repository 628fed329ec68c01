// What a caller may do to a cell, as buttons: only those its role allows are shown (the
// server refuses the others with 403 anyway). Start and stop are desiredState, restart
// the restartedAt annotation (as kukectl does), delete asks first.

import { ApiError, MERGE_PATCH, call } from './api.js';
import { announce, h } from './dom.js';

export function canWrite(me, realm) {
  if (!me || !me.writes) return false;
  return me.role === 'admin' || (me.realms || []).includes(realm);
}

function confirmDialog(question) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', 'aria-label': 'Confirm' },
      h('p', null, question),
      h('form', { method: 'dialog' },
        h('button', { value: 'cancel', class: 'secondary', autofocus: true }, 'Cancel'), ' ',
        h('button', { value: 'yes', class: 'danger', id: 'confirm-yes' }, 'Delete')));
    dialog.addEventListener('close', () => { dialog.remove(); resolve(dialog.returnValue === 'yes'); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

const PATCHES = {
  start: () => ({ spec: { desiredState: 'Running' } }),
  stop: () => ({ spec: { desiredState: 'Stopped' } }),
  restart: () => ({ metadata: { annotations: { 'kukeon.io/restartedAt': new Date().toISOString() } } }),
};

async function act(verb, path, name, output) {
  output.textContent = '';
  try {
    if (verb === 'delete') {
      if (!(await confirmDialog(`Delete cell ${name}? Its containers are stopped and removed.`))) return;
      await call('DELETE', path);
      location.hash = '#/tree';
      announce(`cell ${name} deleted`);
      return;
    }
    await call('PATCH', path, { body: PATCHES[verb](), contentType: MERGE_PATCH });
    announce(`cell ${name}: ${verb} asked`);
  } catch (error) {
    output.textContent = error instanceof ApiError ? `${verb} refused (${error.code}): ${error.message}` : String(error);
  }
}

// The buttons are made once and kept: a status written while the user clicks must not
// swap the element under the pointer (the click would be lost). update() shows Start or
// Stop as the cell's desiredState says.
export class CellActions {
  constructor(me, path, realm, name) {
    this.allowed = canWrite(me, realm);
    if (!this.allowed) {
      this.element = h('span', { class: 'muted role-note' }, `read only (${me.role})`);
      return;
    }
    const output = h('span', { class: 'error', role: 'alert' });
    const button = (verb, label, extra) => h('button', {
      type: 'button', id: `action-${verb}`, class: extra || '',
      onclick: () => act(verb, path, name, output),
    }, label);
    this.start = button('start', 'Start');
    this.stop = button('stop', 'Stop');
    this.element = h('div', { class: 'actions' }, this.start, this.stop,
      button('restart', 'Restart'), button('delete', 'Delete…', 'danger'), output);
  }

  update(cell) {
    if (!this.allowed) return;
    const stopped = cell.spec.desiredState === 'Stopped';
    this.start.hidden = !stopped;
    this.stop.hidden = stopped;
  }
}
