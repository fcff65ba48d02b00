// Bulwark web UI: a client of the public /v1 API, like any other.
//
// Plain ES module, no framework, no build step. Routing is in the URL's
// fragment (#/secrets/...), so the server only serves three files. The
// user's token lives in sessionStorage only (gone with the tab) and goes
// out as X-Vault-Token. Everything the API returns is put in the page as
// text (never as HTML), and the page's CSP forbids inline scripts anyway.

const TOKEN_KEY = 'bulwark.token';
const WHO_KEY = 'bulwark.who';

// ---------------------------------------------------------------- session

const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get who() {
    try { return JSON.parse(sessionStorage.getItem(WHO_KEY) || 'null'); } catch { return null; }
  },
  set(token, who) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(WHO_KEY, JSON.stringify(who));
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(WHO_KEY);
  },
};

// ---------------------------------------------------------------- API

/** An answer of the API that is not a success: its status and `errors`. */
class ApiError extends Error {
  constructor(status, errors, body) {
    super(errors.length ? errors.join('; ') : `HTTP ${status}`);
    this.status = status;
    this.errors = errors;
    this.body = body;
  }
}

/** Encodes a Vault path for a URL, segment by segment (`/` kept). */
function encPath(p) {
  return p.split('/').map((s) => encodeURIComponent(s).replace(/%3A/gi, ':').replace(/%40/g, '@')).join('/');
}

/**
 * Calls `/v1/<path>`. Returns the parsed JSON body (or null for 204).
 * Options: body (JSON), list (LIST as ?list=true), wrapTTL
 * (X-Vault-Wrap-TTL), anonymous (no token), empty404 (a LIST that finds
 * nothing answers 404: return {data:{keys:[]}}).
 */
async function api(method, path, opts = {}) {
  const headers = {};
  const token = session.token;
  if (token && !opts.anonymous) headers['X-Vault-Token'] = token;
  if (opts.wrapTTL) headers['X-Vault-Wrap-TTL'] = opts.wrapTTL;
  let url = '/v1/' + encPath(path);
  if (opts.list) url += '?list=true';
  if (opts.query) url += (opts.list ? '&' : '?') + new URLSearchParams(opts.query).toString();
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, [`The server could not be reached: ${e.message}`], null);
  }
  const text = await resp.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch { body = { raw: text }; }
  }
  if (resp.ok) return body;
  if (resp.status === 404 && opts.list) return { data: { keys: [] } };
  const errors = body && Array.isArray(body.errors) ? body.errors.map(String) : [];
  throw new ApiError(resp.status, errors, body);
}

const list = async (path) => {
  const r = await api('GET', path, { list: true });
  return (r && r.data && r.data.keys) || [];
};

// ---------------------------------------------------------------- DOM helpers

/** Creates an element: h('a', {href: '#'}, 'text', child, [more]). */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && (tag === 'input' || tag === 'textarea' || tag === 'select')) el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, kids);
  return el;
}

function add(el, kids) {
  for (const k of [kids].flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

function clear(el, ...kids) {
  el.replaceChildren();
  return add(el, kids);
}

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

/** A labelled input: field('Path', {id, ...input props}, hint). */
function field(label, props = {}, hint = null) {
  const { tag = 'input', options = [], value, ...rest } = props;
  const id = rest.id || nextId('f');
  const p = { ...rest, id };
  if (tag === 'input' && !p.type) p.type = 'text';
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: `${id}-hint` }, hint);
    p['aria-describedby'] = `${id}-hint`;
  }
  const input = tag === 'select' ? h('select', p, options.map(optionOf)) : h(tag, p);
  if (value !== undefined && value !== null) input.value = value;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
}

function optionOf(o) {
  const [value, text] = Array.isArray(o) ? o : [o, o];
  return h('option', { value }, text);
}

function checkbox(label, props = {}) {
  const id = props.id || nextId('c');
  return h('div', { class: 'field check' }, h('input', { ...props, id, type: 'checkbox' }), h('label', { for: id }, label));
}

function errorBox() {
  return h('div', { class: 'errors', role: 'alert' });
}

/** Shows an error (an ApiError's `errors`, verbatim) in `box`. */
function showError(box, err) {
  const msgs = err instanceof ApiError
    ? (err.errors.length ? err.errors : [err.status === 404 ? 'Not found.' : `The request failed (HTTP ${err.status}).`])
    : [String(err && err.message ? err.message : err)];
  const status = err instanceof ApiError && err.status ? ` (HTTP ${err.status})` : '';
  const kids = [h('p', {}, `Error${status}:`), h('ul', {}, msgs.map((m) => h('li', {}, h('pre', {}, m))))];
  if (err instanceof ApiError && err.status === 503) {
    kids.push(h('p', {}, h('a', { href: '#/status' }, 'Go to Status to unseal')));
  }
  clear(box, kids);
  return box;
}

/**
 * A form whose submit runs `action(form)`: the submit button is disabled
 * meanwhile; a thrown error lands in the form's error box.
 */
function form(props, kids, action) {
  const box = errorBox();
  const f = h('form', { ...props, novalidate: true }, kids, box);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(box);
    const buttons = [...f.querySelectorAll('button[type="submit"]')];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action(f, ev.submitter);
    } catch (e) {
      showError(box, e);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  f.errorBox = box;
  return f;
}

/** A button that runs `action`, showing errors in `box`. */
function actionButton(text, box, action, props = {}) {
  const b = h('button', { type: 'button', ...props }, text);
  b.addEventListener('click', async () => {
    clear(box);
    b.disabled = true;
    try { await action(b); } catch (e) { showError(box, e); } finally { b.disabled = false; }
  });
  return b;
}

/** A button that asks again in place before running a destructive `action`. */
function confirmButton(text, question, box, action, props = {}) {
  const wrap = h('span', { class: 'actions' });
  const start = h('button', { type: 'button', class: 'danger', ...props }, text);
  start.addEventListener('click', () => {
    const yes = actionButton(`Yes, ${text.toLowerCase()}`, box, action, { class: 'danger' });
    const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    no.addEventListener('click', () => { clear(wrap, start); start.focus(); });
    clear(wrap, h('span', {}, question), yes, no);
    no.focus();
  });
  return add(wrap, [start]);
}

function panel(title, ...kids) {
  const id = nextId('p');
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), kids);
}

function table(headers, rows, caption) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', { class: 'muted small' }, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

function props(pairs) {
  return h('dl', { class: 'props' }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v === null || v === '' ? '—' : v)]));
}

function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function fmtTime(t) {
  if (!t) return '—';
  if (typeof t === 'number') return new Date(t * 1000).toISOString();
  return String(t);
}

// ---------------------------------------------------------------- messages

let flashKeep = false;
/** A success message, announced (aria-live) and kept across one navigation. */
function flash(msg, keep = false) {
  document.getElementById('flash').textContent = msg;
  flashKeep = keep;
}

async function copyText(text, button) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch { ok = false; }
  if (!ok) {
    const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true', readonly: true });
    ta.value = text;
    ta.style.position = 'fixed';
    ta.style.left = '-9999px';
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  flash(ok ? 'Copied to the clipboard.' : 'Copying failed: select the value and copy it by hand.');
  if (button && ok) {
    const old = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = old; }, 1500);
  }
}

function copyButton(text, what) {
  const b = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Copy ${what}` }, 'Copy');
  b.addEventListener('click', () => copyText(text, b));
  return b;
}

/** A secret value: hidden until revealed, with reveal and copy buttons. */
function secretValue(value, what) {
  const text = fmtValue(value);
  const code = h('code', { class: 'secret masked', 'data-secret': 'hidden' }, '••••••••');
  const reveal = h('button', { type: 'button', class: 'secondary small', 'aria-pressed': 'false', 'aria-label': `Reveal ${what}` }, 'Reveal');
  reveal.addEventListener('click', () => {
    const shown = reveal.getAttribute('aria-pressed') === 'true';
    code.textContent = shown ? '••••••••' : text;
    code.classList.toggle('masked', shown);
    code.dataset.secret = shown ? 'hidden' : 'shown';
    reveal.setAttribute('aria-pressed', String(!shown));
    reveal.setAttribute('aria-label', `${shown ? 'Reveal' : 'Hide'} ${what}`);
    reveal.textContent = shown ? 'Reveal' : 'Hide';
  });
  return h('span', { class: 'value-cell' }, code, reveal, copyButton(text, what));
}

/** A value shown once (root token, secret-id...): visible, with a copy button. */
function shownValue(value, what) {
  const text = fmtValue(value);
  return h('span', { class: 'value-cell' }, h('code', { class: 'secret' }, text), copyButton(text, what));
}

// ---------------------------------------------------------------- routing

const main = () => document.getElementById('main');

/** `#/a/b?x=1` → {parts: ['a','b'], query: URLSearchParams}. */
function currentRoute() {
  const raw = location.hash.replace(/^#/, '');
  const [path, q] = raw.split('?');
  const parts = path.split('/').filter((p) => p !== '').map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, query: new URLSearchParams(q || '') };
}

/** Builds a hash route from parts (each encoded as one segment). */
function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
}

/** Like route() but the last part is a Vault path whose slashes stay. */
function routeWithPath(parts, path) {
  return route(...parts) + '/' + (path || '').split('/').map(encodeURIComponent).join('/');
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

const PUBLIC = new Set(['login', 'status']);

let renderSeq = 0;
async function render(focus = true) {
  const seq = ++renderSeq;
  const { parts, query } = currentRoute();
  let section = parts[0] || (session.token ? 'secrets' : 'login');
  if (!session.token && !PUBLIC.has(section)) {
    sessionStorage.setItem('bulwark.return', location.hash);
    section = 'login';
  }
  if (!flashKeep) flash('');
  flashKeep = false;
  updateChrome(section);
  const view = VIEWS[section] || notFoundView;
  const root = h('div', { class: 'view' });
  try {
    await view(root, parts.slice(1), query);
  } catch (e) {
    root.append(showError(errorBox(), e));
  }
  if (seq !== renderSeq) return; // a later navigation won
  clear(main(), root);
  if (focus) {
    const h1 = main().querySelector('h1');
    if (h1) { h1.setAttribute('tabindex', '-1'); h1.focus({ preventScroll: false }); }
  }
}

function updateChrome(section) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const who = session.who;
  const box = document.getElementById('who');
  box.hidden = !session.token;
  document.getElementById('who-name').textContent = who
    ? `${who.display_name || 'signed in'} (${(who.policies || []).join(', ')})`
    : '';
  document.getElementById('nav').hidden = !session.token;
}

function crumbs(items) {
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('ol', {}, items.map(([text, href], i) => h('li', {},
      href && i < items.length - 1 ? h('a', { href }, text) : h('span', { 'aria-current': i === items.length - 1 ? 'page' : null }, text)))));
}

async function notFoundView(root) {
  add(root, [h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/secrets' }, 'Go to Secrets'))]);
}

// ---------------------------------------------------------------- sign in

async function loginView(root) {
  const notice = h('div');
  api('GET', 'sys/seal-status', { anonymous: true }).then((st) => {
    if (!st.initialized) clear(notice, h('p', { class: 'notice' }, 'This server is not initialized yet. ', h('a', { href: '#/status' }, 'Initialize it on the Status page.')));
    else if (st.sealed) clear(notice, h('p', { class: 'notice' }, 'This server is sealed. ', h('a', { href: '#/status' }, 'Unseal it on the Status page.')));
  }).catch(() => {});
  const method = field('Method', { tag: 'select', id: 'login-method', options: [['token', 'Token'], ['userpass', 'Username & password'], ['approle', 'AppRole']] });
  const mount = field('Mount path', { id: 'login-mount', autocomplete: 'off' }, 'Where the auth method is enabled (auth/<path>).');
  const groups = {
    token: h('div', { class: 'fields', 'data-method': 'token' },
      field('Token', { id: 'login-token', type: 'password', autocomplete: 'off', required: true })),
    userpass: h('div', { class: 'fields', 'data-method': 'userpass', hidden: true },
      field('Username', { id: 'login-username', autocomplete: 'username' }),
      field('Password', { id: 'login-password', type: 'password', autocomplete: 'current-password' })),
    approle: h('div', { class: 'fields', 'data-method': 'approle', hidden: true },
      field('Role ID', { id: 'login-role-id', autocomplete: 'off' }),
      field('Secret ID', { id: 'login-secret-id', type: 'password', autocomplete: 'off' })),
  };
  const sel = method.querySelector('select');
  const mountInput = mount.querySelector('input');
  const sync = () => {
    for (const [k, g] of Object.entries(groups)) g.hidden = k !== sel.value;
    mount.hidden = sel.value === 'token';
    mountInput.value = sel.value === 'token' ? '' : sel.value;
  };
  sel.addEventListener('change', sync);
  const f = form({ 'aria-label': 'Sign in' }, [
    h('div', { class: 'fields' }, method, mount),
    Object.values(groups),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
  ], async () => {
    const m = sel.value;
    const path = (mountInput.value || m).replace(/^\/+|\/+$/g, '');
    let token;
    if (m === 'token') {
      token = document.getElementById('login-token').value.trim();
      if (!token) throw new Error('Enter a token.');
    } else if (m === 'userpass') {
      const user = document.getElementById('login-username').value.trim();
      const r = await api('POST', `auth/${path}/login/${user}`, { anonymous: true, body: { password: document.getElementById('login-password').value } });
      token = r.auth.client_token;
    } else {
      const r = await api('POST', `auth/${path}/login`, {
        anonymous: true,
        body: { role_id: document.getElementById('login-role-id').value.trim(), secret_id: document.getElementById('login-secret-id').value.trim() },
      });
      token = r.auth.client_token;
    }
    // Check the token (and learn its name and policies) before keeping it.
    session.set(token, null);
    try {
      const me = await api('GET', 'auth/token/lookup-self');
      session.set(token, { display_name: me.data.display_name, policies: me.data.policies || [] });
    } catch (e) {
      session.clear();
      throw e;
    }
    const back = sessionStorage.getItem('bulwark.return');
    sessionStorage.removeItem('bulwark.return');
    flash(`Signed in as ${session.who.display_name}.`, true);
    go(back && back !== '#/login' ? back : '#/secrets');
  });
  add(root, [h('div', { class: 'login panel' }, h('h1', {}, 'Sign in to Bulwark'), notice, f,
    h('p', { class: 'small muted' }, 'The token is kept in this tab only (session storage) and sent to the API as X-Vault-Token.'))]);
  sync();
}

function signOut() {
  session.clear();
  flash('Signed out.', true);
  go('#/login');
}

// ---------------------------------------------------------------- secrets

let mountCache = null;
async function mounts(refresh = false) {
  if (!mountCache || refresh) {
    const r = await api('GET', 'sys/internal/ui/mounts');
    mountCache = { secret: r.data.secret || {}, auth: r.data.auth || {} };
  }
  return mountCache;
}

const kvVersion = (m) => (m.type === 'kv' && m.options && String(m.options.version) === '2' ? 2 : 1);
const HIDDEN_MOUNTS = new Set(['sys/', 'identity/']);

function mountLink(path, m) {
  const name = path.replace(/\/$/, '');
  if (m.type === 'pki') return route('pki', name);
  return route('secrets', name, 'list');
}

async function secretsView(root, parts, query) {
  if (parts.length) return mountView(root, parts, query);
  const box = errorBox();
  const listBody = h('div');
  const listPanel = panel('Enabled engines', listBody);
  const refresh = async () => {
    const ms = await mounts(true);
    const rows = Object.entries(ms.secret)
      .filter(([p]) => !HIDDEN_MOUNTS.has(p))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([p, m]) => [
        h('a', { href: mountLink(p, m) }, p),
        m.type === 'kv' ? `kv v${kvVersion(m)}` : m.type,
        m.description || '',
        h('code', {}, m.accessor || ''),
      ]);
    clear(listBody, table(['Path', 'Type', 'Description', 'Accessor'], rows));
  };
  const type = field('Engine type', { tag: 'select', id: 'engine-type', options: [['kv2', 'KV (version 2)'], ['kv1', 'KV (version 1)'], ['database', 'Database'], ['pki', 'PKI (certificates)'], ['transit', 'Transit (encryption)']] });
  const path = field('Path', { id: 'engine-path', autocomplete: 'off', value: 'kv' }, 'Where it is mounted, e.g. team-alpha');
  const desc = field('Description', { id: 'engine-description', autocomplete: 'off' });
  const typeSel = type.querySelector('select');
  const pathIn = path.querySelector('input');
  let pathTouched = false;
  pathIn.addEventListener('input', () => { pathTouched = true; });
  typeSel.addEventListener('change', () => { if (!pathTouched) pathIn.value = typeSel.value.startsWith('kv') ? 'kv' : typeSel.value; });
  const enable = form({ 'aria-label': 'Enable a secrets engine' }, [
    h('div', { class: 'fields' }, type, path, desc),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Enable engine')),
  ], async () => {
    const p = pathIn.value.trim().replace(/^\/+|\/+$/g, '');
    if (!p) throw new Error('Enter a path.');
    const t = typeSel.value;
    const body = { type: t.startsWith('kv') ? 'kv' : t, description: desc.querySelector('input').value };
    if (t.startsWith('kv')) body.options = { version: t === 'kv2' ? '2' : '1' };
    await api('POST', `sys/mounts/${p}`, { body });
    flash(`Enabled ${t === 'kv2' ? 'kv v2' : t === 'kv1' ? 'kv v1' : t} at ${p}/.`);
    pathIn.value = '';
    pathTouched = false;
    await refresh();
  });
  add(root, [h('h1', {}, 'Secrets engines'), box, listPanel, panel('Enable a secrets engine', enable)]);
  try { await refresh(); } catch (e) { showError(box, e); }
}

async function mountView(root, parts, query) {
  const [name, action = 'list', ...rest] = parts;
  const path = rest.join('/');
  const ms = await mounts();
  const m = ms.secret[name + '/'];
  if (!m) {
    // Maybe created since the cache was filled.
    const fresh = await mounts(true);
    if (!fresh.secret[name + '/']) {
      add(root, [h('h1', {}, name), h('p', {}, 'No such secrets engine, or no access to it. '), h('a', { href: '#/secrets' }, 'Back to Secrets')]);
      return;
    }
    return mountView(root, parts, query);
  }
  if (m.type === 'kv' || m.type === 'cubbyhole') {
    const v = m.type === 'kv' ? kvVersion(m) : 1;
    const ctx = { name, v };
    if (action === 'show') return kvShow(root, ctx, path, query);
    if (action === 'create') return kvEdit(root, ctx, path, true);
    if (action === 'edit') return kvEdit(root, ctx, path, false);
    return kvList(root, ctx, path);
  }
  if (m.type === 'database') return databaseView(root, name);
  if (m.type === 'transit') return transitView(root, name);
  if (m.type === 'pki') { go(route('pki', name)); return; }
  add(root, [h('h1', {}, `${name}/`), h('p', {}, `Engine type ${m.type}: nothing to browse here.`)]);
}

function kvCrumbs(ctx, path, last) {
  const items = [['Secrets', '#/secrets'], [`${ctx.name}/`, route('secrets', ctx.name, 'list')]];
  const segs = path.split('/').filter(Boolean);
  let acc = '';
  segs.forEach((s, i) => {
    const leaf = i === segs.length - 1 && !path.endsWith('/');
    acc += s + (leaf ? '' : '/');
    items.push([leaf ? s : `${s}/`, routeWithPath(['secrets', ctx.name, leaf ? 'show' : 'list'], acc)]);
  });
  if (last) items.push([last, null]);
  return crumbs(items);
}

const kvDataPath = (ctx, p) => (ctx.v === 2 ? `${ctx.name}/data/${p}` : `${ctx.name}/${p}`);
const kvMetaPath = (ctx, p) => (ctx.v === 2 ? `${ctx.name}/metadata/${p}` : `${ctx.name}/${p}`);

async function kvList(root, ctx, path) {
  const dir = path && !path.endsWith('/') ? `${path}/` : path;
  const keys = await list(kvMetaPath(ctx, dir));
  const rows = keys.sort().map((k) => [
    k.endsWith('/')
      ? h('a', { href: routeWithPath(['secrets', ctx.name, 'list'], dir + k) }, k)
      : h('a', { href: routeWithPath(['secrets', ctx.name, 'show'], dir + k) }, k),
    k.endsWith('/') ? 'folder' : 'secret',
  ]);
  add(root, [
    kvCrumbs(ctx, dir),
    h('h1', {}, `${ctx.name}/${dir}`),
    h('p', { class: 'muted' }, `kv version ${ctx.v}`),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: routeWithPath(['secrets', ctx.name, 'create'], dir) }, 'Create secret')),
    rows.length ? table(['Name', 'Kind'], rows) : h('p', {}, 'No secrets here yet.'),
  ]);
}

async function kvShow(root, ctx, path, query) {
  const want = query.get('version');
  const box = errorBox();
  let secret = null;
  let deleted = null;
  try {
    secret = await api('GET', kvDataPath(ctx, path), { query: want && ctx.v === 2 ? { version: want } : undefined });
  } catch (e) {
    // kv v2 answers 404 for a deleted or destroyed version, with its metadata.
    if (e instanceof ApiError && e.status === 404 && e.body && e.body.data && e.body.data.metadata) deleted = e.body.data.metadata;
    else showError(box, e);
  }
  const data = secret ? (ctx.v === 2 ? secret.data.data : secret.data) || {} : {};
  const vmeta = secret && ctx.v === 2 ? secret.data.metadata : deleted;
  const version = vmeta ? vmeta.version : null;
  let meta = null;
  const metaBox = errorBox();
  if (ctx.v === 2) {
    try { meta = (await api('GET', kvMetaPath(ctx, path))).data; } catch (e) { showError(metaBox, e); }
  }
  const actBox = errorBox();
  const reload = () => render(false);
  const title = h('h1', {}, path);
  const head = [kvCrumbs(ctx, path), title];
  if (version) {
    const latest = meta && meta.current_version === version;
    head.push(h('p', {}, h('span', { class: 'badge', id: 'secret-version' }, `Version ${version}`), ' ',
      latest ? h('span', { class: 'badge ok' }, 'current') : null, ' ',
      vmeta.destroyed ? h('span', { class: 'badge bad' }, 'destroyed') : vmeta.deletion_time ? h('span', { class: 'badge bad' }, 'deleted') : null));
  }
  const dataPanel = panel('Data');
  if (secret) {
    const rows = Object.entries(data).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [h('code', {}, k), secretValue(v, `value of ${k}`)]);
    add(dataPanel, rows.length ? table(['Key', 'Value'], rows) : h('p', {}, 'No keys.'));
  } else if (deleted) {
    add(dataPanel, h('p', {}, deleted.destroyed ? 'This version was destroyed: its data is gone for good.' : `This version was deleted at ${deleted.deletion_time}. Undelete it to read it again.`));
  }
  const actions = h('div', { class: 'actions' });
  if (secret || deleted || meta) {
    add(actions, h('a', { class: 'button', href: routeWithPath(['secrets', ctx.name, 'edit'], path) }, 'Edit (new version)'));
  }
  if (ctx.v === 1) {
    add(actions, confirmButton('Delete', 'Delete this secret?', actBox, async () => {
      await api('DELETE', kvDataPath(ctx, path));
      flash(`Deleted ${path}.`, true);
      go(route('secrets', ctx.name, 'list'));
    }));
  } else if (version) {
    if (!vmeta.deletion_time && !vmeta.destroyed) {
      add(actions, actionButton(`Delete version ${version}`, actBox, async () => {
        // The latest version is deleted as clients do (DELETE data/...), others by number.
        if (!want || (meta && meta.current_version === version)) await api('DELETE', kvDataPath(ctx, path));
        else await api('POST', `${ctx.name}/delete/${path}`, { body: { versions: [version] } });
        flash(`Deleted version ${version} of ${path} (it can be undeleted).`, true);
        reload();
      }, { class: 'danger' }));
    }
    if (vmeta.deletion_time && !vmeta.destroyed) {
      add(actions, actionButton(`Undelete version ${version}`, actBox, async () => {
        await api('POST', `${ctx.name}/undelete/${path}`, { body: { versions: [version] } });
        flash(`Undeleted version ${version} of ${path}.`, true);
        reload();
      }, { class: 'secondary' }));
    }
    if (!vmeta.destroyed) {
      add(actions, confirmButton(`Destroy version ${version}`, `Destroy version ${version} for good?`, actBox, async () => {
        await api('POST', `${ctx.name}/destroy/${path}`, { body: { versions: [version] } });
        flash(`Destroyed version ${version} of ${path}.`, true);
        reload();
      }));
    }
    add(actions, confirmButton('Delete all versions', 'Delete every version and the metadata?', actBox, async () => {
      await api('DELETE', kvMetaPath(ctx, path));
      flash(`Deleted ${path} and all its versions.`, true);
      go(route('secrets', ctx.name, 'list'));
    }));
  }
  add(root, [head, box, actions, actBox, dataPanel]);
  if (ctx.v === 2) {
    const histPanel = panel('Version history');
    add(histPanel, metaBox);
    if (meta) {
      const versions = Object.entries(meta.versions || {}).map(([n, v]) => [Number(n), v]).sort((a, b) => b[0] - a[0]);
      add(histPanel, table(['Version', 'Created', 'State', ''], versions.map(([n, v]) => [
        String(n),
        fmtTime(v.created_time),
        v.destroyed ? 'destroyed' : v.deletion_time ? `deleted ${v.deletion_time}` : n === meta.current_version ? 'current' : 'kept',
        n === version ? h('span', { class: 'muted' }, 'shown') : h('a', { href: `${routeWithPath(['secrets', ctx.name, 'show'], path)}?version=${n}`, 'aria-label': `View version ${n}` }, `View version ${n}`),
      ])));
      const metaPanel = panel('Metadata', props([
        ['Current version', String(meta.current_version)],
        ['Oldest version', String(meta.oldest_version)],
        ['Max versions', String(meta.max_versions)],
        ['Check-and-set required', String(meta.cas_required)],
        ['Delete version after', meta.delete_version_after],
        ['Created', fmtTime(meta.created_time)],
        ['Updated', fmtTime(meta.updated_time)],
        ['Custom metadata', meta.custom_metadata ? JSON.stringify(meta.custom_metadata) : ''],
      ]));
      add(root, h('div', { class: 'grid-2' }, histPanel, metaPanel));
    } else {
      add(root, histPanel);
    }
  }
}

function kvRow(key = '', value = '') {
  const row = h('div', { class: 'kv-row' });
  const keyF = field('Key', { class: 'kv-key', autocomplete: 'off', value: key });
  const valF = field('Value', { class: 'kv-value', type: 'password', autocomplete: 'off', value: typeof value === 'string' ? value : JSON.stringify(value) });
  const remove = h('button', { type: 'button', class: 'secondary' }, 'Remove');
  remove.addEventListener('click', () => {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    if (next) next.querySelector('input')?.focus();
  });
  return add(row, [keyF, valF, remove]);
}

async function kvEdit(root, ctx, path, creating) {
  let current = {};
  let meta = null;
  if (!creating) {
    try {
      const r = await api('GET', kvDataPath(ctx, path));
      current = (ctx.v === 2 ? r.data.data : r.data) || {};
      meta = ctx.v === 2 ? r.data.metadata : null;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
  }
  const rows = h('div', { class: 'kv-rows' });
  const entries = Object.entries(current);
  if (!entries.length) rows.append(kvRow());
  for (const [k, v] of entries) rows.append(kvRow(k, v));
  const showValues = checkbox('Show values', { id: 'kv-show-values' });
  showValues.querySelector('input').addEventListener('change', (ev) => {
    for (const i of rows.querySelectorAll('input.kv-value')) i.type = ev.target.checked ? 'text' : 'password';
  });
  const addRow = h('button', { type: 'button', class: 'secondary' }, 'Add field');
  addRow.addEventListener('click', () => {
    const r = kvRow();
    if (showValues.querySelector('input').checked) r.querySelector('input.kv-value').type = 'text';
    rows.append(r);
    r.querySelector('input').focus();
  });
  const pathF = creating ? field('Path', { id: 'kv-path', autocomplete: 'off', value: path }, 'e.g. app/database; folders are made by the slashes') : null;
  const f = form({ 'aria-label': creating ? 'Create secret' : 'Edit secret' }, [
    pathF ? h('div', { class: 'fields' }, pathF) : null,
    h('fieldset', {}, h('legend', {}, 'Fields'), rows, h('div', { class: 'actions' }, addRow, showValues)),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, creating ? 'Save secret' : 'Save new version'),
      h('a', { class: 'button secondary', href: creating ? routeWithPath(['secrets', ctx.name, 'list'], path) : routeWithPath(['secrets', ctx.name, 'show'], path) }, 'Cancel')),
  ], async () => {
    const p = creating ? document.getElementById('kv-path').value.trim().replace(/^\/+/, '') : path;
    if (!p || p.endsWith('/')) throw new Error('Enter a secret path (not ending with /).');
    const data = {};
    for (const r of rows.querySelectorAll('.kv-row')) {
      const k = r.querySelector('input.kv-key').value.trim();
      const v = r.querySelector('input.kv-value').value;
      if (!k) continue;
      if (Object.hasOwn(data, k)) throw new Error(`The key "${k}" is given twice.`);
      data[k] = v;
    }
    if (!Object.keys(data).length) throw new Error('Add at least one key.');
    const r = await api('POST', kvDataPath(ctx, p), { body: ctx.v === 2 ? { data } : data });
    const v = r && r.data && r.data.version;
    flash(v ? `Saved ${p}: version ${v}.` : `Saved ${p}.`, true);
    go(routeWithPath(['secrets', ctx.name, 'show'], p));
  });
  add(root, [
    kvCrumbs(ctx, path, creating ? 'create' : 'edit'),
    h('h1', {}, creating ? `Create secret in ${ctx.name}/` : `Edit ${path}`),
    meta ? h('p', { class: 'muted' }, `Saving creates version ${meta.version + 1} (now ${meta.version}).`) : null,
    h('div', { class: 'panel' }, f),
  ]);
  const first = creating ? document.getElementById('kv-path') : null;
  if (first) setTimeout(() => first.focus(), 0);
}

async function databaseView(root, name) {
  const box = errorBox();
  const [conns, roles] = await Promise.all([list(`${name}/config`).catch((e) => { showError(box, e); return []; }), list(`${name}/roles`).catch((e) => { showError(box, e); return []; })]);
  const out = h('div', { class: 'result', id: 'db-creds', 'aria-live': 'polite' });
  const credBox = errorBox();
  const reload = () => render(false);
  const roleRows = roles.sort().map((r) => [h('code', {}, r), actionButton('Generate credentials', credBox, async () => {
    const c = await api('GET', `${name}/creds/${r}`);
    clear(out, panel(`Credentials from ${r}`, props([
      ['Username', c.data && c.data.username ? shownValue(c.data.username, 'username') : ''],
      ['Password', c.data && c.data.password ? secretValue(c.data.password, 'password') : ''],
      ['Lease', c.lease_id ? h('a', { href: `#/leases?lease_id=${encodeURIComponent(c.lease_id)}`, id: 'db-creds-lease' }, c.lease_id) : ''],
      ['Lease duration', `${c.lease_duration}s`],
    ])));
  }, { class: 'secondary small', 'aria-label': `Generate credentials from role ${r}` })]);
  const connForm = form({ 'aria-label': 'Configure connection' }, [
    h('div', { class: 'fields' },
      field('Connection name', { id: 'db-conn-name', autocomplete: 'off' }),
      field('Plugin', { tag: 'select', id: 'db-conn-plugin', options: ['postgresql-database-plugin', 'mysql-database-plugin'] }),
      field('Allowed roles', { id: 'db-conn-roles', autocomplete: 'off', value: '*' }, 'Comma-separated, or *')),
    h('div', { class: 'fields' },
      field('Connection URL', { id: 'db-conn-url', autocomplete: 'off' }, 'e.g. postgresql://{{username}}:{{password}}@db:5432/app'),
      field('Username', { id: 'db-conn-user', autocomplete: 'off' }),
      field('Password', { id: 'db-conn-password', type: 'password', autocomplete: 'new-password' }, 'Written only: it is never read back')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Save connection')),
  ], async () => {
    const n = document.getElementById('db-conn-name').value.trim();
    if (!n) throw new Error('Enter a connection name.');
    await api('POST', `${name}/config/${n}`, {
      body: {
        plugin_name: document.getElementById('db-conn-plugin').value,
        connection_url: document.getElementById('db-conn-url').value.trim(),
        username: document.getElementById('db-conn-user').value.trim(),
        password: document.getElementById('db-conn-password').value,
        allowed_roles: document.getElementById('db-conn-roles').value.trim(),
      },
    });
    flash(`Saved connection ${n}.`, true);
    reload();
  });
  const roleForm = form({ 'aria-label': 'Create database role' }, [
    h('div', { class: 'fields' },
      field('Role name', { id: 'db-role-name', autocomplete: 'off' }),
      field('Connection', { tag: 'select', id: 'db-role-db', options: conns.sort() }),
      field('Default TTL', { id: 'db-role-ttl', autocomplete: 'off', value: '1h' }),
      field('Max TTL', { id: 'db-role-max-ttl', autocomplete: 'off', value: '24h' })),
    field('Creation statements', { tag: 'textarea', id: 'db-role-sql', class: 'code', spellcheck: 'false' }, 'SQL run to create the user: {{name}}, {{password}} and {{expiration}} are filled in'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Save role')),
  ], async () => {
    const n = document.getElementById('db-role-name').value.trim();
    if (!n) throw new Error('Enter a role name.');
    await api('POST', `${name}/roles/${n}`, {
      body: {
        db_name: document.getElementById('db-role-db').value,
        creation_statements: document.getElementById('db-role-sql').value,
        default_ttl: document.getElementById('db-role-ttl').value.trim() || undefined,
        max_ttl: document.getElementById('db-role-max-ttl').value.trim() || undefined,
      },
    });
    flash(`Saved role ${n}.`, true);
    reload();
  });
  add(root, [
    crumbs([['Secrets', '#/secrets'], [`${name}/`, null]]),
    h('h1', {}, `${name}/ (database)`), box,
    h('div', { class: 'grid-2' },
      panel('Connections', conns.length ? table(['Name'], conns.sort().map((c) => [h('code', {}, c)])) : h('p', {}, 'None configured.')),
      panel('Roles', roleRows.length ? table(['Role', ''], roleRows) : h('p', {}, 'None configured.'), credBox)),
    out,
    panel('Configure a connection', connForm),
    panel('Create or update a role', conns.length ? roleForm : h('p', {}, 'Configure a connection first.')),
  ]);
}

async function transitView(root, name) {
  const box = errorBox();
  const keysBody = h('div');
  const keysPanel = panel('Keys', keysBody);
  const refresh = async () => {
    const keys = await list(`${name}/keys`);
    clear(keysBody, keys.length ? table(['Name'], keys.sort().map((k) => [h('code', {}, k)])) : h('p', {}, 'No keys yet.'));
  };
  const type = field('Key type', { tag: 'select', id: 'transit-type', options: ['aes256-gcm96', 'aes128-gcm96', 'chacha20-poly1305', 'ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'hmac'] });
  const keyName = field('Name', { id: 'transit-name', autocomplete: 'off' });
  const f = form({ 'aria-label': 'Create key' }, [h('div', { class: 'fields' }, keyName, type), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create key'))], async () => {
    const n = keyName.querySelector('input').value.trim();
    if (!n) throw new Error('Enter a key name.');
    await api('POST', `${name}/keys/${n}`, { body: { type: type.querySelector('select').value } });
    flash(`Created key ${n}.`);
    keyName.querySelector('input').value = '';
    await refresh();
  });
  add(root, [crumbs([['Secrets', '#/secrets'], [`${name}/`, null]]), h('h1', {}, `${name}/ (transit)`), box, keysPanel, panel('Create a key', f)]);
  try { await refresh(); } catch (e) { showError(box, e); }
}

// ---------------------------------------------------------------- access

async function accessView(root, parts) {
  if (parts.length) return methodView(root, parts);
  const box = errorBox();
  const listBody = h('div');
  const listPanel = panel('Auth methods', listBody);
  const refresh = async () => {
    const ms = await mounts(true);
    const rows = Object.entries(ms.auth).sort(([a], [b]) => a.localeCompare(b)).map(([p, m]) => [
      h('a', { href: route('access', p.replace(/\/$/, '')) }, p), m.type, m.description || '', h('code', {}, m.accessor || ''),
    ]);
    clear(listBody, table(['Path', 'Type', 'Description', 'Accessor'], rows));
  };
  const type = field('Method type', { tag: 'select', id: 'method-type', options: [['approle', 'AppRole'], ['userpass', 'Username & password'], ['cert', 'TLS certificates']] });
  const path = field('Path', { id: 'method-path', autocomplete: 'off', value: 'approle' }, 'Logins go to auth/<path>/login');
  const desc = field('Description', { id: 'method-description', autocomplete: 'off' });
  const typeSel = type.querySelector('select');
  const pathIn = path.querySelector('input');
  let touched = false;
  pathIn.addEventListener('input', () => { touched = true; });
  typeSel.addEventListener('change', () => { if (!touched) pathIn.value = typeSel.value; });
  const enable = form({ 'aria-label': 'Enable an auth method' }, [
    h('div', { class: 'fields' }, type, path, desc),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Enable method')),
  ], async () => {
    const p = pathIn.value.trim().replace(/^\/+|\/+$/g, '');
    if (!p) throw new Error('Enter a path.');
    await api('POST', `sys/auth/${p}`, { body: { type: typeSel.value, description: desc.querySelector('input').value } });
    flash(`Enabled ${typeSel.value} at auth/${p}/.`);
    await refresh();
  });
  add(root, [h('h1', {}, 'Access'), box, listPanel, panel('Enable an auth method', enable),
    h('p', {}, 'Policies decide what a login may do: ', h('a', { href: '#/policies' }, 'manage ACL policies'), '.')]);
  try { await refresh(); } catch (e) { showError(box, e); }
}

const csv = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

async function methodView(root, parts) {
  const [name, sub, ...rest] = parts;
  const ms = await mounts(true);
  const m = ms.auth[name + '/'];
  if (!m) {
    add(root, [h('h1', {}, `auth/${name}/`), h('p', {}, 'No such auth method, or no access to it.')]);
    return;
  }
  const head = [crumbs([['Access', '#/access'], [`auth/${name}/`, sub ? route('access', name) : null], ...(sub ? [[rest.join('/'), null]] : [])])];
  if (m.type === 'approle' && sub === 'role' && rest.length) return approleRole(root, head, name, rest.join('/'));
  if (m.type === 'approle') return approleView(root, head, name);
  if (m.type === 'userpass') return userpassView(root, head, name);
  if (m.type === 'cert') return certView(root, head, name);
  if (m.type === 'token') return tokenView(root, head);
  add(root, [head, h('h1', {}, `auth/${name}/`), h('p', {}, `Method type ${m.type}.`)]);
}

function tokenFields(prefix) {
  return [
    field('Token policies', { id: `${prefix}-policies`, autocomplete: 'off' }, 'Comma-separated, e.g. readonly-kv-backend'),
    field('Token TTL', { id: `${prefix}-ttl`, autocomplete: 'off' }, 'e.g. 1h (empty: the default)'),
    field('Token max TTL', { id: `${prefix}-max-ttl`, autocomplete: 'off' }),
  ];
}

function tokenBody(prefix) {
  const body = {};
  const pol = document.getElementById(`${prefix}-policies`).value;
  if (pol.trim()) body.token_policies = csv(pol);
  const ttl = document.getElementById(`${prefix}-ttl`).value.trim();
  if (ttl) body.token_ttl = ttl;
  const max = document.getElementById(`${prefix}-max-ttl`).value.trim();
  if (max) body.token_max_ttl = max;
  return body;
}

async function approleView(root, head, name) {
  const box = errorBox();
  const rolesBody = h('div');
  const rolesPanel = panel('Roles', rolesBody);
  const refresh = async () => {
    const roles = await list(`auth/${name}/role`);
    clear(rolesBody, roles.length
      ? table(['Role'], roles.sort().map((r) => [h('a', { href: route('access', name, 'role', r) }, r)]))
      : h('p', {}, 'No roles yet.'));
  };
  const roleName = field('Role name', { id: 'role-name', autocomplete: 'off' });
  const f = form({ 'aria-label': 'Create role' }, [
    h('div', { class: 'fields' }, roleName, ...tokenFields('role'),
      field('Secret ID TTL', { id: 'role-secret-id-ttl', autocomplete: 'off' }, 'e.g. 24h (empty: no expiry)'),
      field('Secret ID uses', { id: 'role-secret-id-uses', type: 'number', min: '0', value: '0' }, '0: unlimited')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create role')),
  ], async () => {
    const n = roleName.querySelector('input').value.trim();
    if (!n) throw new Error('Enter a role name.');
    const body = tokenBody('role');
    const sttl = document.getElementById('role-secret-id-ttl').value.trim();
    if (sttl) body.secret_id_ttl = sttl;
    const uses = Number(document.getElementById('role-secret-id-uses').value || 0);
    if (uses) body.secret_id_num_uses = uses;
    await api('POST', `auth/${name}/role/${n}`, { body });
    flash(`Created role ${n}.`, true);
    go(route('access', name, 'role', n));
  });
  add(root, [head, h('h1', {}, `auth/${name}/ (AppRole)`), box, rolesPanel, panel('Create a role', f)]);
  try { await refresh(); } catch (e) { showError(box, e); }
}

async function approleRole(root, head, name, role) {
  const r = await api('GET', `auth/${name}/role/${role}`);
  const d = r.data || {};
  const idBox = errorBox();
  const idOut = h('div', { class: 'result', id: 'role-id-result', 'aria-live': 'polite' });
  const readId = actionButton('Read role ID', idBox, async () => {
    const x = await api('GET', `auth/${name}/role/${role}/role-id`);
    clear(idOut, props([['Role ID', shownValue(x.data.role_id, 'role ID')]]));
  });
  const wrap = field('Wrap TTL (optional)', { id: 'secret-id-wrap-ttl', autocomplete: 'off' }, 'e.g. 5m: the answer comes as a single-use wrapping token (X-Vault-Wrap-TTL)');
  const sidOut = h('div', { class: 'result', id: 'secret-id-result', 'aria-live': 'polite' });
  const gen = form({ 'aria-label': 'Generate secret ID' }, [
    h('div', { class: 'fields' }, wrap),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Generate secret ID')),
  ], async () => {
    const ttl = wrap.querySelector('input').value.trim();
    const x = await api('POST', `auth/${name}/role/${role}/secret-id`, { wrapTTL: ttl || undefined, body: {} });
    if (x.wrap_info) {
      clear(sidOut, h('div', { class: 'panel once' }, h('h3', {}, 'Wrapped secret ID (shown once)'), props([
        ['Wrapping token', shownValue(x.wrap_info.token, 'wrapping token')],
        ['Accessor', h('code', {}, x.wrap_info.accessor)],
        ['TTL', `${x.wrap_info.ttl}s`],
        ['Path', x.wrap_info.creation_path],
      ]), h('p', { class: 'small' }, 'Unwrap it once with sys/wrapping/unwrap.')));
    } else {
      clear(sidOut, h('div', { class: 'panel once' }, h('h3', {}, 'Secret ID (shown once)'), props([
        ['Secret ID', shownValue(x.data.secret_id, 'secret ID')],
        ['Accessor', h('code', {}, x.data.secret_id_accessor)],
        ['TTL', `${x.data.secret_id_ttl}s`],
        ['Uses', String(x.data.secret_id_num_uses)],
      ])));
    }
  });
  const delBox = errorBox();
  add(root, [head, h('h1', {}, `Role ${role}`),
    panel('Settings', props([
      ['Token policies', (d.token_policies || d.policies || []).join(', ')],
      ['Token TTL', `${d.token_ttl || 0}s`],
      ['Token max TTL', `${d.token_max_ttl || 0}s`],
      ['Secret ID TTL', `${d.secret_id_ttl || 0}s`],
      ['Secret ID uses', String(d.secret_id_num_uses || 0)],
      ['Bind secret ID', String(d.bind_secret_id)],
    ])),
    h('div', { class: 'grid-2' },
      panel('Role ID', h('div', { class: 'actions' }, readId), idBox, idOut),
      panel('Secret ID', gen, sidOut)),
    h('div', { class: 'actions' }, confirmButton('Delete role', `Delete role ${role}?`, delBox, async () => {
      await api('DELETE', `auth/${name}/role/${role}`);
      flash(`Deleted role ${role}.`, true);
      go(route('access', name));
    })), delBox]);
}

async function userpassView(root, head, name) {
  const box = errorBox();
  const usersBody = h('div');
  const usersPanel = panel('Users', usersBody);
  const rowBox = errorBox();
  const refresh = async () => {
    const users = await list(`auth/${name}/users`);
    clear(usersBody, users.length
      ? table(['User', ''], users.sort().map((u) => [h('code', {}, u), confirmButton('Delete', `Delete user ${u}?`, rowBox, async () => {
        await api('DELETE', `auth/${name}/users/${u}`);
        flash(`Deleted user ${u}.`);
        await refresh();
      }, { class: 'danger small', 'aria-label': `Delete user ${u}` })]))
      : h('p', {}, 'No users yet.'), rowBox);
  };
  const user = field('Username', { id: 'user-name', autocomplete: 'off' });
  const pass = field('Password', { id: 'user-password', type: 'password', autocomplete: 'new-password' });
  const f = form({ 'aria-label': 'Create user' }, [
    h('div', { class: 'fields' }, user, pass, ...tokenFields('user')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create user')),
  ], async () => {
    const u = user.querySelector('input').value.trim();
    if (!u) throw new Error('Enter a username.');
    await api('POST', `auth/${name}/users/${u}`, { body: { password: pass.querySelector('input').value, ...tokenBody('user') } });
    flash(`Created user ${u}.`);
    user.querySelector('input').value = '';
    pass.querySelector('input').value = '';
    await refresh();
  });
  add(root, [head, h('h1', {}, `auth/${name}/ (userpass)`), box, usersPanel, panel('Create a user', f)]);
  try { await refresh(); } catch (e) { showError(box, e); }
}

async function certView(root, head, name) {
  const box = errorBox();
  const certsBody = h('div');
  const certsPanel = panel('Trusted certificates', certsBody);
  const refresh = async () => {
    const certs = await list(`auth/${name}/certs`);
    clear(certsBody, certs.length ? table(['Name'], certs.sort().map((c) => [h('code', {}, c)])) : h('p', {}, 'None yet.'));
  };
  const cn = field('Name', { id: 'cert-name', autocomplete: 'off' });
  const pem = field('CA certificate (PEM)', { tag: 'textarea', id: 'cert-pem', class: 'code', spellcheck: 'false' });
  const f = form({ 'aria-label': 'Add trusted certificate' }, [
    h('div', { class: 'fields' }, cn, field('Token policies', { id: 'cert-policies', autocomplete: 'off' })), pem,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save certificate')),
  ], async () => {
    const n = cn.querySelector('input').value.trim();
    if (!n) throw new Error('Enter a name.');
    await api('POST', `auth/${name}/certs/${n}`, { body: { certificate: pem.querySelector('textarea').value, token_policies: csv(document.getElementById('cert-policies').value) } });
    flash(`Saved certificate ${n}.`);
    await refresh();
  });
  add(root, [head, h('h1', {}, `auth/${name}/ (TLS certificates)`), box, certsPanel, panel('Trust a certificate', f)]);
  try { await refresh(); } catch (e) { showError(box, e); }
}

async function tokenView(root, head) {
  const out = h('div', { class: 'result', 'aria-live': 'polite' });
  const f = form({ 'aria-label': 'Create token' }, [
    h('div', { class: 'fields' },
      field('Policies', { id: 'token-policies', autocomplete: 'off' }, 'Comma-separated'),
      field('TTL', { id: 'token-ttl', autocomplete: 'off' }, 'e.g. 1h'),
      field('Display name', { id: 'token-display-name', autocomplete: 'off' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create token')),
  ], async () => {
    const body = {};
    const p = csv(document.getElementById('token-policies').value);
    if (p.length) body.policies = p;
    const ttl = document.getElementById('token-ttl').value.trim();
    if (ttl) body.ttl = ttl;
    const dn = document.getElementById('token-display-name').value.trim();
    if (dn) body.display_name = dn;
    const r = await api('POST', 'auth/token/create', { body });
    clear(out, h('div', { class: 'panel once' }, h('h3', {}, 'New token (shown once)'), props([
      ['Token', shownValue(r.auth.client_token, 'token')],
      ['Accessor', h('code', {}, r.auth.accessor)],
      ['Policies', (r.auth.policies || []).join(', ')],
      ['TTL', `${r.auth.lease_duration}s`],
    ])));
  });
  add(root, [head, h('h1', {}, 'auth/token/ (tokens)'), panel('Create a token', f, out)]);
}

// ---------------------------------------------------------------- policies

async function policiesView(root, parts) {
  if (parts.length) return policyEdit(root, parts.join('/'));
  const names = await list('sys/policies/acl');
  add(root, [
    h('h1', {}, 'ACL policies'),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: route('policies', '+new') }, 'Create ACL policy')),
    table(['Name'], names.sort().map((n) => [h('a', { href: route('policies', n) }, n)])),
  ]);
}

/** The line an error message names ("line 3", "line: 3"), if any. */
function errorLine(msg) {
  const m = /\bline[:\s]+(\d+)/i.exec(msg);
  return m ? Number(m[1]) : null;
}

function hclEditor(text) {
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true', id: 'policy-gutter' });
  const band = h('div', { class: 'band', hidden: true });
  const ta = h('textarea', { id: 'policy-text', class: 'code', wrap: 'off', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', rows: '14', 'aria-describedby': 'policy-help' });
  ta.value = text;
  const ed = h('div', { class: 'editor' }, gutter, h('div', { class: 'editor-area' }, band, ta));
  let bad = null;
  const lineHeight = () => parseFloat(getComputedStyle(ta).lineHeight) || 24;
  const placeBand = () => {
    if (!bad) { band.hidden = true; return; }
    band.hidden = false;
    const pad = parseFloat(getComputedStyle(ta).paddingTop) || 0;
    band.style.top = `${pad + (bad - 1) * lineHeight() - ta.scrollTop}px`;
  };
  const numbers = () => {
    const n = ta.value.split('\n').length;
    if (gutter.childElementCount !== n) {
      clear(gutter, Array.from({ length: n }, (_, i) => h('span', {}, String(i + 1))));
    }
    for (const [i, s] of [...gutter.children].entries()) s.classList.toggle('error-line', i + 1 === bad);
    gutter.scrollTop = ta.scrollTop;
    placeBand();
  };
  ta.addEventListener('input', () => {
    if (bad) { bad = null; ed.classList.remove('invalid'); ta.removeAttribute('aria-invalid'); }
    numbers();
  });
  ta.addEventListener('scroll', () => { gutter.scrollTop = ta.scrollTop; placeBand(); });
  // Tab indents (two spaces); Escape then Tab leaves the editor.
  let escaped = false;
  ta.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { escaped = true; return; }
    if (ev.key === 'Tab' && !ev.shiftKey && !escaped && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      ta.setRangeText('  ', ta.selectionStart, ta.selectionEnd, 'end');
      numbers();
    }
    if (ev.key !== 'Escape') escaped = false;
  });
  numbers();
  return {
    el: ed,
    textarea: ta,
    mark(line) {
      bad = line;
      ed.classList.toggle('invalid', Boolean(line));
      if (line) ta.setAttribute('aria-invalid', 'true');
      else ta.removeAttribute('aria-invalid');
      numbers();
    },
    goTo(line) {
      const lines = ta.value.split('\n');
      const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
      const end = start + (lines[line - 1] || '').length;
      ta.focus();
      ta.setSelectionRange(start, end);
      ta.scrollTop = Math.max(0, (line - 3) * lineHeight());
      numbers();
    },
    refresh: numbers,
  };
}

async function policyEdit(root, name) {
  const creating = name === '+new';
  let text = '';
  if (!creating) {
    const r = await api('GET', `sys/policies/acl/${name}`);
    text = r.data.policy || '';
  } else {
    text = 'path "secret/data/*" {\n  capabilities = ["read", "list"]\n}\n';
  }
  const editor = hclEditor(text);
  const nameF = field('Name', { id: 'policy-name', autocomplete: 'off', value: creating ? '' : name, readonly: !creating });
  const lineNote = h('p', { class: 'small', id: 'policy-error-line' });
  const save = form({ 'aria-label': 'Policy editor' }, [
    h('div', { class: 'fields' }, nameF),
    h('div', { class: 'field' }, h('label', { for: 'policy-text' }, 'Policy (HCL or JSON)'), editor.el,
      h('span', { class: 'hint', id: 'policy-help' }, 'Tab indents; press Escape then Tab to leave the editor. Syntax is checked by the server when you save.')),
    lineNote,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, creating ? 'Create policy' : 'Save policy')),
  ], async () => {
    const n = document.getElementById('policy-name').value.trim();
    if (!n) throw new Error('Enter a policy name.');
    clear(lineNote);
    editor.mark(null);
    try {
      await api('PUT', `sys/policies/acl/${n}`, { body: { policy: editor.textarea.value } });
    } catch (e) {
      const line = e instanceof ApiError ? e.errors.map(errorLine).find((l) => l) : null;
      if (line) {
        editor.mark(line);
        const jump = h('button', { type: 'button', class: 'link' }, `Go to line ${line}`);
        jump.addEventListener('click', () => editor.goTo(line));
        clear(lineNote, h('span', { class: 'badge bad' }, `The server reports an error at line ${line}`), ' ', jump);
      }
      throw e;
    }
    flash(`Saved policy ${n}.`, true);
    if (creating) go(route('policies', n));
    else render(false);
  });
  // The server's message right under the editor, beside the marked line.
  lineNote.before(save.errorBox);
  const delBox = errorBox();
  const del = creating || name === 'default' || name === 'root' ? null : confirmButton('Delete policy', `Delete policy ${name}?`, delBox, async () => {
    await api('DELETE', `sys/policies/acl/${name}`);
    flash(`Deleted policy ${name}.`, true);
    go('#/policies');
  });
  add(root, [crumbs([['Policies', '#/policies'], [creating ? 'new' : name, null]]), h('h1', {}, creating ? 'Create ACL policy' : `Policy ${name}`),
    h('div', { class: 'panel' }, save), del ? h('div', { class: 'actions' }, del) : null, delBox]);
  requestAnimationFrame(() => editor.refresh());
}

// ---------------------------------------------------------------- leases

async function leasesView(root, parts, query) {
  const out = h('div', { class: 'result', id: 'lease-result', 'aria-live': 'polite' });
  const leaseF = field('Lease ID', { id: 'lease-id', autocomplete: 'off', value: query.get('lease_id') || '' }, 'e.g. database/creds/readonly/AbCd…');
  const incF = field('Renew increment', { id: 'lease-increment', autocomplete: 'off' }, 'e.g. 1h (empty: the default)');
  const leaseId = () => {
    const id = document.getElementById('lease-id').value.trim();
    if (!id) throw new Error('Enter a lease ID.');
    return id;
  };
  const show = (title, d) => clear(out, panel(title, props([
    ['Lease ID', d.id || d.lease_id ? h('code', {}, d.id || d.lease_id) : undefined],
    ['Issued', d.issue_time !== undefined ? fmtTime(d.issue_time) : undefined],
    ['Expires', d.expire_time !== undefined ? fmtTime(d.expire_time) : undefined],
    ['Last renewal', d.last_renewal !== undefined ? fmtTime(d.last_renewal) : undefined],
    ['TTL', d.ttl !== undefined ? `${d.ttl}s` : d.lease_duration !== undefined ? `${d.lease_duration}s` : undefined],
    ['Renewable', d.renewable !== undefined ? String(d.renewable) : undefined],
  ])));
  const f = form({ 'aria-label': 'Lease' }, [
    h('div', { class: 'fields' }, leaseF, incF),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', value: 'lookup' }, 'Look up'),
      h('button', { type: 'submit', value: 'renew', class: 'secondary' }, 'Renew'),
      h('button', { type: 'submit', value: 'revoke', class: 'danger' }, 'Revoke')),
  ], async (_form, submitter) => {
    const id = leaseId();
    const what = submitter ? submitter.value : 'lookup';
    if (what === 'renew') {
      const body = { lease_id: id };
      const inc = document.getElementById('lease-increment').value.trim();
      if (inc) body.increment = inc;
      const r = await api('PUT', 'sys/leases/renew', { body });
      flash(`Renewed ${id}.`);
      show('Renewed', r);
    } else if (what === 'revoke') {
      await api('PUT', 'sys/leases/revoke', { body: { lease_id: id } });
      flash(`Revoked ${id}.`);
      clear(out, h('p', {}, `Lease ${id} is revoked.`));
    } else {
      const r = await api('PUT', 'sys/leases/lookup', { body: { lease_id: id } });
      show('Lease', r.data);
    }
  });
  const prefixF = field('Prefix', { id: 'lease-prefix', autocomplete: 'off' }, 'e.g. database/creds/readonly/ (needs sudo)');
  const listOut = h('div', { class: 'result', 'aria-live': 'polite' });
  const lf = form({ 'aria-label': 'List leases' }, [
    h('div', { class: 'fields' }, prefixF),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'List leases')),
  ], async () => {
    let p = document.getElementById('lease-prefix').value.trim();
    if (p && !p.endsWith('/')) p += '/';
    const keys = await list(`sys/leases/lookup/${p}`);
    clear(listOut, keys.length ? table(['Lease'], keys.map((k) => [k.endsWith('/')
      ? h('code', {}, p + k)
      : h('button', { type: 'button', class: 'link', onclick: () => { document.getElementById('lease-id').value = p + k; f.requestSubmit(); } }, p + k)]))
      : h('p', {}, 'No leases under this prefix.'));
  });
  add(root, [h('h1', {}, 'Leases'), h('p', { class: 'muted' }, 'Dynamic secrets (database credentials…) come with a lease: look one up, renew it or revoke it.'),
    panel('Look up, renew or revoke', f, out), panel('List by prefix', lf, listOut)]);
  if (query.get('lease_id')) setTimeout(() => f.requestSubmit(), 0);
}

// ---------------------------------------------------------------- PKI

async function pkiView(root, parts) {
  if (parts.length >= 3 && parts[1] === 'cert') return pkiCert(root, parts[0], parts.slice(2).join('/'));
  if (parts.length) return pkiMount(root, parts[0]);
  const ms = await mounts(true);
  const pkis = Object.entries(ms.secret).filter(([, m]) => m.type === 'pki').map(([p]) => p.replace(/\/$/, '')).sort();
  add(root, [h('h1', {}, 'PKI'),
    pkis.length
      ? table(['Engine', 'Downloads'], pkis.map((p) => [h('a', { href: route('pki', p) }, `${p}/`), pkiLinks(p)]))
      : h('p', {}, 'No PKI engine is enabled. ', h('a', { href: '#/secrets' }, 'Enable one on the Secrets page'), ' (type PKI).')]);
}

function pkiLinks(m) {
  return h('span', { class: 'actions' },
    h('a', { class: 'button secondary small', href: `/v1/${encPath(m)}/ca/pem`, download: `${m.replace(/\//g, '_')}-ca.pem`, id: `ca-link-${m}` }, 'Download CA (PEM)'),
    h('a', { class: 'button secondary small', href: `/v1/${encPath(m)}/crl/pem`, download: `${m.replace(/\//g, '_')}-crl.pem`, id: `crl-link-${m}` }, 'Download CRL (PEM)'));
}

async function pkiMount(root, m) {
  const box = errorBox();
  const [roles, certs] = await Promise.all([
    list(`${m}/roles`).catch((e) => { showError(box, e); return []; }),
    list(`${m}/certs`).catch((e) => { showError(box, e); return []; }),
  ]);
  const reload = () => render(false);
  // Root CA
  const rootOut = h('div', { class: 'result', 'aria-live': 'polite' });
  const rootForm = form({ 'aria-label': 'Generate root CA' }, [
    h('div', { class: 'fields' },
      field('Common name', { id: 'pki-root-cn', autocomplete: 'off' }, 'e.g. example.internal'),
      field('TTL', { id: 'pki-root-ttl', autocomplete: 'off', value: '87600h' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Generate root CA')),
  ], async () => {
    const cn = document.getElementById('pki-root-cn').value.trim();
    if (!cn) throw new Error('Enter a common name.');
    const r = await api('POST', `${m}/root/generate/internal`, { body: { common_name: cn, ttl: document.getElementById('pki-root-ttl').value.trim() || undefined } });
    clear(rootOut, props([['Serial', h('code', {}, r.data.serial_number)], ['Certificate', h('pre', { class: 'pem' }, r.data.certificate)]]));
    flash(`Generated the root CA ${cn}.`);
  });
  // Roles
  const roleForm = form({ 'aria-label': 'Create PKI role' }, [
    h('div', { class: 'fields' },
      field('Role name', { id: 'pki-role-name', autocomplete: 'off' }),
      field('Allowed domains', { id: 'pki-role-domains', autocomplete: 'off' }, 'Comma-separated, e.g. example.internal'),
      field('Max TTL', { id: 'pki-role-max-ttl', autocomplete: 'off', value: '72h' }),
      checkbox('Allow subdomains', { id: 'pki-role-subdomains', checked: true })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Save role')),
  ], async () => {
    const n = document.getElementById('pki-role-name').value.trim();
    if (!n) throw new Error('Enter a role name.');
    await api('POST', `${m}/roles/${n}`, {
      body: {
        allowed_domains: csv(document.getElementById('pki-role-domains').value),
        allow_subdomains: document.getElementById('pki-role-subdomains').checked,
        max_ttl: document.getElementById('pki-role-max-ttl').value.trim() || undefined,
      },
    });
    flash(`Saved role ${n}.`, true);
    reload();
  });
  // Issue
  const issueOut = h('div', { class: 'result', id: 'pki-issued', 'aria-live': 'polite' });
  const issueForm = form({ 'aria-label': 'Issue certificate' }, [
    h('div', { class: 'fields' },
      field('Role', { tag: 'select', id: 'pki-issue-role', options: roles.sort() }),
      field('Common name', { id: 'pki-issue-cn', autocomplete: 'off' }, 'e.g. api.example.internal'),
      field('TTL', { id: 'pki-issue-ttl', autocomplete: 'off', value: '24h' }),
      field('Alt names', { id: 'pki-issue-alt', autocomplete: 'off' }, 'Comma-separated (optional)')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Issue certificate')),
  ], async () => {
    const role = document.getElementById('pki-issue-role').value;
    if (!role) throw new Error('Create a role first.');
    const cn = document.getElementById('pki-issue-cn').value.trim();
    if (!cn) throw new Error('Enter a common name.');
    const body = { common_name: cn };
    const ttl = document.getElementById('pki-issue-ttl').value.trim();
    if (ttl) body.ttl = ttl;
    const alt = document.getElementById('pki-issue-alt').value.trim();
    if (alt) body.alt_names = alt;
    const r = await api('POST', `${m}/issue/${role}`, { body });
    const d = r.data;
    clear(issueOut, h('div', { class: 'panel once' }, h('h3', {}, `Certificate for ${cn}`),
      h('p', { class: 'small' }, 'The private key is shown only now: copy it before leaving the page.'),
      props([
        ['Serial', h('a', { href: route('pki', m, 'cert', d.serial_number), id: 'pki-issued-serial' }, d.serial_number)],
        ['Expires', fmtTime(d.expiration)],
        ['Certificate', h('div', {}, h('pre', { class: 'pem' }, d.certificate), copyButton(d.certificate, 'certificate'))],
        ['Private key', secretValue(d.private_key, 'private key')],
        ['Issuing CA', h('pre', { class: 'pem' }, d.issuing_ca)],
      ])));
    flash(`Issued certificate ${d.serial_number}.`);
  });
  const certRows = certs.sort().map((s) => [h('a', { href: route('pki', m, 'cert', s) }, s)]);
  add(root, [
    crumbs([['PKI', '#/pki'], [`${m}/`, null]]),
    h('h1', {}, `PKI ${m}/`), box, pkiLinks(m),
    panel('Issue a certificate', roles.length ? null : h('p', { class: 'notice' }, 'No role yet: create one below.'), issueForm, issueOut),
    h('div', { class: 'grid-2' },
      panel('Certificates', certRows.length ? table(['Serial number'], certRows) : h('p', {}, 'No certificates yet.')),
      panel('Roles', roles.length ? table(['Role'], roles.map((r) => [h('code', {}, r)])) : h('p', {}, 'No roles yet.'), h('h3', {}, 'Create or update a role'), roleForm)),
    panel('Root CA', h('p', { class: 'small muted' }, 'A new engine has no CA: generate a root here (or import one with the API).'), rootForm, rootOut),
  ]);
}

async function pkiCert(root, m, serial) {
  const r = await api('GET', `${m}/cert/${serial}`);
  const d = r.data || {};
  const revoked = d.revocation_time && Number(d.revocation_time) > 0;
  const box = errorBox();
  add(root, [
    crumbs([['PKI', '#/pki'], [`${m}/`, route('pki', m)], [serial, null]]),
    h('h1', {}, `Certificate ${serial}`),
    h('p', {}, revoked ? h('span', { class: 'badge bad', id: 'cert-state' }, `revoked ${d.revocation_time_rfc3339 || fmtTime(d.revocation_time)}`) : h('span', { class: 'badge ok', id: 'cert-state' }, 'valid')),
    panel('Certificate', h('pre', { class: 'pem' }, d.certificate || ''), copyButton(d.certificate || '', 'certificate')),
    revoked ? null : h('div', { class: 'actions' }, confirmButton('Revoke certificate', `Revoke ${serial}?`, box, async () => {
      await api('POST', `${m}/revoke`, { body: { serial_number: serial } });
      flash(`Revoked ${serial}.`, true);
      render(false);
    })),
    box, pkiLinks(m),
  ]);
}

// ---------------------------------------------------------------- status

async function statusView(root) {
  const statusPanel = h('section', { class: 'panel', 'aria-labelledby': 'status-h' });
  const initOut = h('div', { class: 'result', 'aria-live': 'polite' });
  const refresh = async () => {
    const st = await api('GET', 'sys/seal-status', { anonymous: true });
    const state = !st.initialized ? 'not initialized' : st.sealed ? 'sealed' : 'unsealed';
    const kids = [h('h2', { id: 'status-h' }, 'Seal status'),
      h('p', {}, 'This server is ', h('strong', { id: 'seal-state', class: st.sealed ? 'badge bad' : 'badge ok' }, state), '.'),
      props([
        ['Initialized', String(st.initialized)],
        ['Sealed', String(st.sealed)],
        ['Key shares', String(st.n)],
        ['Threshold', String(st.t)],
        ['Unseal progress', `${st.progress} of ${st.t}`],
        ['Seal type', st.type],
        ['Version', st.version],
        ['Cluster', st.cluster_name || ''],
        ['Storage', st.storage_type || ''],
      ])];
    if (!st.initialized) kids.push(initForm(refresh, initOut));
    else if (st.sealed) kids.push(unsealForm(st, refresh));
    else if (session.token) kids.push(sealForm(refresh));
    else kids.push(h('p', {}, h('a', { href: '#/login' }, 'Sign in'), ' to manage this server.'));
    clear(statusPanel, kids);
  };
  add(root, [h('h1', {}, 'Status'), initOut, statusPanel]);
  await refresh();
}

function initForm(refresh, out) {
  return form({ 'aria-label': 'Initialize' }, [
    h('h3', {}, 'Initialize'),
    h('p', { class: 'small' }, 'Creates the unseal key shares and the root token. They are shown once.'),
    h('div', { class: 'fields' },
      field('Key shares', { id: 'init-shares', type: 'number', min: '1', max: '255', value: '5' }),
      field('Key threshold', { id: 'init-threshold', type: 'number', min: '1', max: '255', value: '3' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Initialize')),
  ], async () => {
    const r = await api('PUT', 'sys/init', {
      anonymous: true,
      body: { secret_shares: Number(document.getElementById('init-shares').value), secret_threshold: Number(document.getElementById('init-threshold').value) },
    });
    const keys = r.keys_base64 || r.keys || [];
    clear(out, h('section', { class: 'panel once', 'aria-labelledby': 'init-keys-h', id: 'init-keys' },
      h('h2', { id: 'init-keys-h' }, 'Unseal keys and root token (shown once)'),
      h('p', {}, 'Store each key with a different person now: this page will not show them again.'),
      h('ol', { class: 'keys' }, keys.map((k, i) => h('li', {}, shownValue(k, `unseal key ${i + 1}`)))),
      props([['Root token', shownValue(r.root_token, 'root token')]])));
    flash('Initialized. Now unseal with the threshold of keys.');
    await refresh();
  });
}

function unsealForm(st, refresh) {
  const keyF = field('Unseal key', { id: 'unseal-key', type: 'password', autocomplete: 'off' }, 'One key share (base64 or hex) per submission');
  const prog = h('div', {},
    h('label', { for: 'unseal-progress', class: 'label' }, 'Unseal progress'), ' ',
    h('progress', { id: 'unseal-progress', max: String(st.t || 1), value: String(st.progress || 0) }, `${st.progress} of ${st.t}`),
    h('p', { id: 'unseal-progress-text' }, `${st.progress} of ${st.t} keys provided`));
  const f = form({ 'aria-label': 'Unseal' }, [
    h('h3', {}, 'Unseal'), prog,
    h('div', { class: 'fields' }, keyF),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Unseal'), h('button', { type: 'submit', value: 'reset', class: 'secondary' }, 'Reset progress')),
  ], async (_f, submitter) => {
    if (submitter && submitter.value === 'reset') {
      await api('PUT', 'sys/unseal', { anonymous: true, body: { reset: true } });
      flash('Unseal progress reset.');
      await refresh();
      return;
    }
    const key = document.getElementById('unseal-key').value.trim();
    if (!key) throw new Error('Enter an unseal key.');
    const r = await api('PUT', 'sys/unseal', { anonymous: true, body: { key } });
    flash(r.sealed ? `Key accepted: ${r.progress} of ${r.t} keys provided.` : 'Unsealed.');
    await refresh();
    document.getElementById(r.sealed ? 'unseal-key' : 'seal-state')?.focus();
  });
  return f;
}

function sealForm(refresh) {
  const box = errorBox();
  return h('div', {}, h('h3', {}, 'Seal'),
    h('p', { class: 'small' }, 'Sealing stops every request until the threshold of unseal keys is given again (needs root or sudo on sys/seal).'),
    h('div', { class: 'actions' }, confirmButton('Seal', 'Seal this server now?', box, async () => {
      await api('PUT', 'sys/seal');
      flash('Sealed.');
      await refresh();
    }, { id: 'seal-button' })), box);
}

// ---------------------------------------------------------------- start

const VIEWS = {
  login: loginView,
  secrets: secretsView,
  access: accessView,
  policies: policiesView,
  leases: leasesView,
  pki: pkiView,
  status: statusView,
};

function start() {
  document.getElementById('sign-out').addEventListener('click', signOut);
  // The skip link must not change the route: move the focus instead.
  document.getElementById('skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    main().focus();
  });
  window.addEventListener('hashchange', () => render(true));
  if (!location.hash || location.hash === '#' || location.hash === '#/') {
    history.replaceState(null, '', session.token ? '#/secrets' : '#/login');
  }
  render(false);
}

start();
