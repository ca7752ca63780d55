/** Marketplace: search and filter the catalog, read an item, then try, deploy, train or open it. */

import { Sanitizer } from '@jupyterlab/apputils';

import { CatalogItem, CatalogQuery } from '../api';
import { busy, fill, h, showError } from '../dom';
import { Ctx, Panel } from './base';

const sanitizer = new Sanitizer();
/** Filter name → its key in the catalog's facets. */
const FACETS: Record<string, string> = { task: 'tasks', category: 'categories', tag: 'tags' };

export class MarketplacePanel extends Panel {
  private q = h('input', { id: 'ai4lab-mp-q', type: 'search', placeholder: 'Search modules and tools' });
  private kind = h('select', { id: 'ai4lab-mp-kind' }, h('option', { value: 'modules', text: 'Modules' }), h('option', { value: 'tools', text: 'Tools' }));
  private filters: Record<string, HTMLSelectElement> = {
    task: h('select', { id: 'ai4lab-mp-task' }),
    category: h('select', { id: 'ai4lab-mp-category' }),
    tag: h('select', { id: 'ai4lab-mp-tag' })
  };
  private gpu = h('select', { id: 'ai4lab-mp-gpu' },
    h('option', { value: '', text: 'GPU: any' }), h('option', { value: 'true', text: 'GPU: yes' }), h('option', { value: 'false', text: 'GPU: no' }));
  private searchButton = h('button', { id: 'ai4lab-mp-search', class: 'jp-mod-styled jp-mod-accept', text: 'Search' });
  private count = h('div', { class: 'ai4lab-mp-count' });
  private cards = h('div', { class: 'ai4lab-cards' });
  private detail = h('div', { class: 'ai4lab-detail', hidden: true });
  private errors = h('div', { class: 'ai4lab-errors' });
  private loadedFacets = '';

  constructor(ctx: Ctx) {
    super(ctx, 'marketplace', 'Marketplace');
    this.q.addEventListener('keydown', e => e.key === 'Enter' && this.search());
    this.searchButton.addEventListener('click', () => this.search());
    this.kind.addEventListener('change', () => this.search());
    const bar = h('div', { class: 'ai4lab-toolbar' }, this.q, this.searchButton);
    const filters = h('div', { class: 'ai4lab-filters' }, this.kind,
      ...Object.entries(this.filters).map(([name, sel]) => h('label', {}, name, sel)), this.gpu);
    this.node.append(h('h2', { text: 'Marketplace' }), bar, filters, this.errors, this.count, this.cards, this.detail);
    void this.search();
  }

  present(args?: Record<string, any>): void {
    if (args?.q !== undefined) {
      this.q.value = args.q;
      void this.search();
    }
  }

  query(): CatalogQuery {
    const q: CatalogQuery = { q: this.q.value.trim(), gpu: this.gpu.value as CatalogQuery['gpu'], per_page: 50 };
    for (const [name, sel] of Object.entries(this.filters)) {
      (q as any)[name] = sel.value;
    }
    q.facets = this.loadedFacets !== this.kind.value;
    return q;
  }

  async search(): Promise<void> {
    this.detail.hidden = true;
    this.cards.hidden = false;
    await busy(this.searchButton, this.errors, async () => {
      const page = await this.ctx.api.catalog(this.kind.value, this.query());
      if (page.facets) {
        this.loadedFacets = this.kind.value;
        for (const [name, sel] of Object.entries(this.filters)) {
          const current = sel.value;
          fill(sel, h('option', { value: '', text: 'any' }),
            ...(page.facets[FACETS[name]] ?? []).map(v => h('option', { value: v, text: v })));
          sel.value = current;
        }
      }
      const what = this.kind.value === 'tools' ? 'tool' : 'module';
      const term = this.q.value.trim();
      this.count.textContent = `${page.total} ${what}${page.total === 1 ? '' : 's'}${term ? ` for “${term}”` : ''}`;
      fill(this.cards, ...page.items.map(item => this.card(item)));
    });
  }

  card(item: CatalogItem): HTMLElement {
    const open = () => void this.openItem(item.id);
    return h('article', { class: 'ai4lab-card', 'data-id': item.id, tabindex: 0, onclick: open, onkeydown: (e: KeyboardEvent) => e.key === 'Enter' && open() },
      h('h3', { text: item.title }),
      h('p', { class: 'ai4lab-summary', text: item.summary }),
      h('div', { class: 'ai4lab-tags' },
        item.gpu_capable ? h('span', { class: 'ai4lab-tag ai4lab-gpu', text: 'GPU' }) : null,
        ...(item.tags ?? []).slice(0, 6).map(t => h('span', { class: 'ai4lab-tag', text: t }))));
  }

  async openItem(id: string): Promise<void> {
    const kind = this.kind.value;
    fill(this.detail, h('p', { text: 'Loading…' }));
    this.detail.hidden = false;
    this.cards.hidden = true;
    try {
      const item = await this.ctx.api.item(kind, id);
      fill(this.detail, this.itemView(item, kind));
    } catch (e) {
      showError(this.detail, e);
      this.detail.prepend(h('button', { class: 'jp-mod-styled', text: '← Back', onclick: () => this.back() }));
    }
  }

  back(): void {
    this.detail.hidden = true;
    this.cards.hidden = false;
  }

  itemView(item: CatalogItem, kind: string): HTMLElement {
    const errors = h('div', { class: 'ai4lab-errors' });
    const note = h('div', { class: 'ai4lab-note' });
    const description = h('div', { class: 'ai4lab-description' });
    description.innerHTML = sanitizer.sanitize(item.description_html ?? '');
    const local = item.runs_locally;
    const action = (name: string, label: string, fn: () => void, enabled = true) =>
      h('button', { class: 'jp-mod-styled', 'data-action': name, text: label, disabled: !enabled,
        title: enabled ? null : 'this item has no package that runs on this platform', onclick: fn });
    const ide = action('ide', 'Open in IDE', async () => {
      const b = ide as HTMLButtonElement;
      const out = await busy(b, errors, () => this.ctx.api.openInIde(item.id));
      if (out) {
        note.textContent = `Copied into your workspace: ${out.folder}/ (${out.files.length} files)`;
        this.ctx.reveal(out.folder);
      }
    }, local && kind === 'modules');
    return h('div', { 'data-id': item.id },
      h('button', { class: 'jp-mod-styled ai4lab-back', text: '← All results', onclick: () => this.back() }),
      h('h2', { text: item.title }),
      h('p', { class: 'ai4lab-summary', text: item.summary }),
      h('div', { class: 'ai4lab-tags' }, ...(item.tags ?? []).map(t => h('span', { class: 'ai4lab-tag', text: t }))),
      h('div', { class: 'ai4lab-actions' },
        action('try', 'Try', () => this.ctx.open('deploy', { item: item.id, purpose: 'try' }), local && kind === 'modules'),
        action('deploy', 'Deploy', () => this.ctx.open('deploy', { item: item.id, purpose: 'inference' }), local && kind === 'modules'),
        action('train', 'Train', () => this.ctx.open('deploy', { item: item.id, purpose: 'training' }), local && kind === 'modules'),
        ide,
        kind === 'tools' && item.id === 'ai4lab-flower'
          ? action('flower', 'Start a Flower server', () => this.ctx.open('flower'))
          : null),
      errors, note, description);
  }
}
