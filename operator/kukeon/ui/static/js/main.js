// The console's entry: sign-in (the token kukectl ui put in the URL's fragment, or one
// typed once), the router (#/tree, #/cell/…, #/sets, #/set/…, #/nodes, #/secrets, #/apply,
// #/search/…),
// the keyboard shortcuts.

import { call, forgetToken, setToken, token, whenUnauthorized } from './api.js';
import { ApplyView } from './apply.js';
import { CellView } from './cell.js';
import { SetView } from './cellset.js';
import { fill, h } from './dom.js';
import { NodesView, SearchView, SecretsView, SetsView } from './pages.js';
import { Store } from './store.js';
import { TreeView } from './tree.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const search = document.getElementById('search');
let store = null;
let me = null;
let view = null;

// Only kukectl ui's forward (plain http on this host) hands a token in the URL. Anywhere
// else a token in a link is whoever made the link's: taking it would sign the reader in
// as them (what they then apply, they apply as that user), so it is dropped unused.
function takeTokenFromFragment() {
  const match = /^#token=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (!match) return;
  history.replaceState(null, '', `${location.pathname}#/tree`);
  const forward = location.protocol === 'http:' && ['127.0.0.1', 'localhost'].includes(location.hostname);
  if (forward) setToken(match[1]);
}

// A link may hold any text: a malformed escape (#/cell/a/b/c/%E0) is taken as written;
// decodeURIComponent's URIError left the page blank, or the previous view under the new
// address.
function decodePart(part) {
  try { return decodeURIComponent(part); } catch { return part; }
}

function route() {
  if (!me) return;
  const previous = view;
  const [, name = 'tree', ...rest] = location.hash.split('/');
  const parts = rest.map(decodePart);
  document.querySelectorAll('header nav a').forEach((link) => {
    link.toggleAttribute('aria-current', link.getAttribute('href') === `#/${name === 'set' ? 'sets' : name}`);
  });
  switch (name) {
    case 'cell': view = new CellView(store, main, me, parts.join('/')); break;
    case 'nodes': view = new NodesView(store, main); break;
    case 'sets': view = new SetsView(store, main, me); break;
    case 'set': view = new SetView(store, main, parts.join('/')); break;
    case 'secrets': view = new SecretsView(store, main); break;
    case 'apply': view = new ApplyView(main, me); break;
    case 'search': view = new SearchView(store, main, parts.join('/')); break;
    default: view = new TreeView(store, main);
  }
  if (previous) previous.close();
  document.title = `kukeon · ${name}`;
}

function signOut(message) {
  forgetToken();
  if (view) view.close();
  view = null;
  if (store) store.close();
  store = null;
  me = null;
  showLogin(message);
}

function showLogin(message) {
  fill(who);
  document.getElementById('logout').hidden = true;
  document.getElementById('nav-apply').hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'login-help' });
  const form = h('form', { class: 'login panel', id: 'login' },
    h('h1', null, 'Sign in'),
    h('p', { id: 'login-help', class: 'muted' }, 'Your bearer token (from kukeond\'s tokens file). It is kept in this tab only, until you close it or sign out.'),
    message ? h('p', { class: 'error', role: 'alert' }, message) : null,
    h('label', { for: 'token' }, 'Token'), input, h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    start();
  });
  fill(main, form);
  input.focus();
}

async function start() {
  try {
    me = await call('GET', '/ui/whoami');
  } catch (error) {
    const known = token() ? (error.code === 401 ? 'That token is not valid.' : error.message) : null;
    forgetToken();
    showLogin(known);
    return;
  }
  store = new Store();
  fill(who, h('span', { id: 'whoami' }, `${me.user} · ${me.role}`));
  document.getElementById('logout').hidden = false;
  // Validate is a dry-run write: a caller who may write nothing is not offered either.
  document.getElementById('nav-apply').hidden = !me.writes;
  route();
}

function shortcuts(event) {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName) || event.target.isContentEditable;
  if (event.key === 'Escape' && event.target === search) { search.blur(); return; }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const go = { t: '#/tree', c: '#/sets', n: '#/nodes', s: '#/secrets', a: me && me.writes ? '#/apply' : null }[event.key];
  if (event.key === '/') { event.preventDefault(); search.focus(); search.select(); }
  else if (go) { event.preventDefault(); location.hash = go; }
  else if (event.key === 'ArrowDown' && location.hash.startsWith('#/tree')) {
    const first = main.querySelector('.tree a.name');
    if (first) { event.preventDefault(); first.focus(); }
  }
}

whenUnauthorized(() => { if (me) signOut('The token is no longer accepted: sign in again.'); });
window.addEventListener('hashchange', route);
document.addEventListener('keydown', shortcuts);
document.getElementById('logout').addEventListener('click', () => signOut(null));
document.getElementById('search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  location.hash = `#/search/${encodeURIComponent(search.value.trim())}`;
});
takeTokenFromFragment();
start();
