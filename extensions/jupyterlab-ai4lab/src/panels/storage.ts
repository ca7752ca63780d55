/** Storage: browse my platform storage, upload, download, delete, and pick a training input. */

import { StorageEntry, StorageUsage } from '../api';
import { busy, fill, h, showError } from '../dom';
import { Ctx, Panel } from './base';

export function parentOf(path: string): string {
  const parts = path.split('/').filter(Boolean);
  parts.pop();
  return parts.join('/');
}

export function joinPath(...parts: string[]): string {
  return parts.flatMap(p => p.split('/')).filter(Boolean).join('/');
}

/** Sizes as people read them (powers of 1000, as disks are sold; the same as the platform's messages). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n.toFixed(0)} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function usageText(u: StorageUsage): string {
  const percent = u.allowed_bytes ? ` (${Math.round((100 * u.used_bytes) / u.allowed_bytes)}%)` : '';
  return `Used ${humanSize(u.used_bytes)} of ${humanSize(u.allowed_bytes)}${percent}`;
}

export class StoragePanel extends Panel {
  private path = '';
  private crumbs = h('div', { id: 'ai4lab-storage-path', class: 'ai4lab-crumbs' });
  private list = h('ul', { id: 'ai4lab-storage-list', class: 'ai4lab-files' });
  private errors = h('div', { class: 'ai4lab-errors' });
  private usage = h('p', { id: 'ai4lab-storage-usage', class: 'ai4lab-note' });
  private upload = h('input', { id: 'ai4lab-storage-upload', type: 'file', multiple: true });
  private uploadButton = h('button', { id: 'ai4lab-storage-upload-button', class: 'jp-mod-styled', text: 'Upload' });
  private folder = h('input', { id: 'ai4lab-storage-folder', type: 'text', placeholder: 'new folder name' });

  constructor(ctx: Ctx) {
    super(ctx, 'storage', 'Storage');
    this.uploadButton.addEventListener('click', () => void this.uploadFiles());
    const mkdir = h('button', { class: 'jp-mod-styled', text: 'New folder' });
    mkdir.addEventListener('click', () => void busy(mkdir, this.errors, async () => {
      const name = this.folder.value.trim();
      if (!name) {
        throw new Error('Give the new folder a name');
      }
      await this.ctx.api.mkdir(joinPath(this.path, name));
      this.folder.value = '';
      await this.cd(this.path);
    }));
    const useHere = h('button', { id: 'ai4lab-storage-use-here', class: 'jp-mod-styled', text: 'Use this folder as training input',
      onclick: () => this.ctx.open('deploy', { dataset: this.path }) });
    this.node.append(h('h2', { text: 'Storage' }),
      h('p', { class: 'ai4lab-note', text: 'Your platform storage (also at storage/ in this session).' }),
      this.usage, this.crumbs, h('div', { class: 'ai4lab-toolbar' }, this.upload, this.uploadButton, this.folder, mkdir, useHere),
      this.errors, this.list);
    void this.cd('');
  }

  present(args?: Record<string, any>): void {
    void this.cd(args?.path ?? this.path);
  }

  async cd(path: string): Promise<void> {
    try {
      const listing = await this.ctx.api.listStorage(path);
      void this.ctx.api.me().then(me => { this.usage.textContent = usageText(me.storage); }, () => undefined);
      this.path = listing.path ?? path;
      fill(this.errors);
      this.renderCrumbs();
      const entries = [...listing.content].sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'directory' ? -1 : 1));
      fill(this.list, ...(this.path ? [h('li', {}, h('a', { href: '#', text: '..', onclick: (e: Event) => { e.preventDefault(); void this.cd(parentOf(this.path)); } }))] : []),
        ...entries.map(e => this.entry(e)));
      if (!entries.length) {
        this.list.append(h('li', { class: 'ai4lab-note', text: 'empty folder' }));
      }
    } catch (e) {
      showError(this.errors, e);
    }
  }

  renderCrumbs(): void {
    const parts = this.path.split('/').filter(Boolean);
    fill(this.crumbs, h('a', { href: '#', text: 'storage', onclick: (e: Event) => { e.preventDefault(); void this.cd(''); } }),
      ...parts.flatMap((p, i) => [' / ', h('a', { href: '#', text: p, onclick: (e: Event) => { e.preventDefault(); void this.cd(parts.slice(0, i + 1).join('/')); } })]));
  }

  entry(e: StorageEntry): HTMLElement {
    const full = joinPath(this.path, e.name);
    const dir = e.type === 'directory';
    const name = h('a', { href: '#', class: dir ? 'ai4lab-dir' : 'ai4lab-file', text: dir ? `${e.name}/` : e.name,
      onclick: (ev: Event) => { ev.preventDefault(); void (dir ? this.cd(full) : this.download(full)); } });
    const use = h('button', { class: 'jp-mod-styled ai4lab-small', 'data-action': 'use', text: 'Use as training input',
      onclick: () => this.ctx.open('deploy', { dataset: full }) });
    const del = h('button', { class: 'jp-mod-styled jp-mod-warn ai4lab-small', 'data-action': 'delete', text: 'Delete' });
    del.addEventListener('click', () => void busy(del, this.errors, async () => {
      if (!window.confirm(`Delete ${full}${dir ? ' and everything in it' : ''}?`)) {
        return;
      }
      await this.ctx.api.remove(full);
      await this.cd(this.path);
    }));
    return h('li', { 'data-path': full }, name, e.size !== undefined && !dir ? h('small', { text: ` ${e.size} B` }) : null, use, del);
  }

  async download(path: string): Promise<void> {
    try {
      const blob = await this.ctx.api.download(path);
      const a = h('a', { href: URL.createObjectURL(blob), download: path.split('/').pop() });
      document.body.append(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (e) {
      showError(this.errors, e);
    }
  }

  async uploadFiles(): Promise<void> {
    const files = Array.from(this.upload.files ?? []);
    if (!files.length) {
      showError(this.errors, new Error('Choose files to upload first'));
      return;
    }
    await busy(this.uploadButton, this.errors, async () => {
      for (const f of files) {
        await this.ctx.api.upload(joinPath(this.path, f.name), f);
      }
      this.upload.value = '';
      await this.cd(this.path);
    });
  }
}
