/**
 * Building and updating the page. The DOM is built with textContent only (never innerHTML), so a
 * job's name can never inject markup; rows are kept and updated in place, so focus and scroll
 * position survive each refresh.
 */

type Child = Node | string | null | undefined;

/** Attributes of `h`: `text` sets textContent, `class` the class, `on…` a listener; false, null and undefined are left out. */
export type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, children?: readonly Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'class') el.className = String(value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children ?? []) {
    if (child === null || child === undefined) continue;
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** Sets an element's text only when it differs, so an unchanged page is not touched. */
export function setText(el: Node, text: string | number | null | undefined): void {
  const value = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** An element of the page's HTML shell (dashboard/public/index.html). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

export function statusBadge(status: string): HTMLSpanElement {
  return h('span', { class: `badge status-${status}`, text: status });
}

/** Replaces the badge in `cell` when the state changed. */
export function setBadge(cell: HTMLElement, state: string, className = `status-${state}`): void {
  if (cell.dataset.state === state) return;
  cell.dataset.state = state;
  cell.textContent = '';
  cell.appendChild(h('span', { class: `badge ${className}`, text: state }));
}

export function progressBar(label: string): HTMLProgressElement {
  return h('progress', { max: '100', value: '0', 'aria-label': label });
}

/** A table's header row of column titles. */
export function headRow(titles: readonly string[]): HTMLTableSectionElement {
  return h('thead', null, [
    h(
      'tr',
      null,
      titles.map((text) => h('th', { scope: 'col', text })),
    ),
  ]);
}

/**
 * One row per item, keyed, in the order of the items: rows are created once and updated in place.
 * `R` is what `create` returns: the row and the cells `update` fills.
 */
export class KeyedRows<T, R extends { row: HTMLTableRowElement }> {
  private readonly rows = new Map<string, R>();

  constructor(
    private readonly body: HTMLTableSectionElement,
    private readonly key: (item: T) => string,
    private readonly create: (item: T) => R,
    private readonly update: (row: R, item: T) => void,
  ) {}

  sync(items: readonly T[]): void {
    const stale = new Map(this.rows);
    let before: HTMLTableRowElement | null = null;
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i]!;
      const k = this.key(item);
      let entry = this.rows.get(k);
      if (!entry) {
        entry = this.create(item);
        this.rows.set(k, entry);
      }
      stale.delete(k);
      this.update(entry, item);
      if (entry.row.nextSibling !== before || entry.row.parentNode !== this.body) this.body.insertBefore(entry.row, before);
      before = entry.row;
    }
    for (const [k, entry] of stale) {
      entry.row.remove();
      this.rows.delete(k);
    }
  }
}
