/** Storage: browse my platform storage, upload, download, delete, and pick a training input. */

import { StorageEntry, StorageUsage, StorageWhere } from '../api';
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
  if (u.allowed_bytes === null || u.used_bytes === null) {
    return 'My own storage: its server keeps count.';
  }
  const used = u.used_bytes;
  const percent = u.allowed_bytes ? ` (${Math.round((100 * used) / u.allowed_bytes)}%)` : '';
  return `Used ${humanSize(used)} of ${humanSize(u.allowed_bytes)}${percent}`;
}

export function whereText(w: StorageWhere): string {
  if (w.source === 'platform' && w.type === 'local') {
    return "The platform's storage.";
  }
  const whose = w.source === 'own' ? 'My own' : "The platform's";
  return `${whose} ${w.type} storage at ${w.url}${w.endpoint_url ? ` (${w.endpoint_url})` : ''}${w.username ? `, as ${w.username}` : ''}.`;
}

/** The body of PUT /me/storage from the connect form, or what to fix first. */
export function ownStorageBody(f: Record<string, string>): { problems: string[]; body: Record<string, string> } {
  const problems: string[] = [];
  const url = f.url.trim();
  if (f.type === 's3' && !/^s3:\/\/[^/]+/.test(url)) {
    problems.push('URL: an S3 storage is s3://BUCKET[/PREFIX]');
  }
  if (f.type === 'webdav' && !/^https?:\/\//.test(url)) {
    problems.push('URL: a WebDAV storage is https://HOST/PATH (Nextcloud: …/remote.php/dav/files/USER)');
  }
  if (!f.password) {
    problems.push(f.type === 's3' ? 'Secret key: give it' : 'Password: give it (an app password)');
  }
  const body: Record<string, string> = { type: f.type, url, username: f.username.trim(), password: f.password };
  if (f.type === 's3' && f.endpoint_url.trim()) {
    body.endpoint_url = f.endpoint_url.trim();
  }
  if (f.type === 'webdav') {
    body.vendor = f.vendor || 'other';
  }
  return { problems, body };
}

export class StoragePanel extends Panel {
  private path = '';
  private crumbs = h('div', { id: 'ai4lab-storage-path', class: 'ai4lab-crumbs' });
  private list = h('ul', { id: 'ai4lab-storage-list', class: 'ai4lab-files' });
  private errors = h('div', { class: 'ai4lab-errors' });
  private usage = h('p', { id: 'ai4lab-storage-usage', class: 'ai4lab-note' });
  private where = h('p', { id: 'ai4lab-storage-where', class: 'ai4lab-note' });
  private own: Record<string, HTMLInputElement | HTMLSelectElement> = {
    type: h('select', { id: 'ai4lab-own-type' }, h('option', { value: 'webdav', text: 'WebDAV (Nextcloud)' }), h('option', { value: 's3', text: 'S3 (MinIO, Ceph, AWS)' })),
    url: h('input', { id: 'ai4lab-own-url', type: 'text', placeholder: 'https://host/remote.php/dav/files/me or s3://bucket' }),
    endpoint_url: h('input', { id: 'ai4lab-own-endpoint', type: 'text', placeholder: 'S3 endpoint (MinIO, Ceph); empty: AWS' }),
    vendor: h('select', { id: 'ai4lab-own-vendor' }, ...['nextcloud', 'owncloud', 'other'].map(v => h('option', { value: v, text: v }))),
    username: h('input', { id: 'ai4lab-own-username', type: 'text', placeholder: 'user, or S3 access key id' }),
    password: h('input', { id: 'ai4lab-own-password', type: 'password', placeholder: 'app password, or S3 secret key' })
  };
  private ownErrors = h('div', { class: 'ai4lab-errors' });
  private disconnect = h('button', { id: 'ai4lab-own-disconnect', class: 'jp-mod-styled', text: "Use the platform's storage" });
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
      this.usage, this.where, this.ownForm(), this.crumbs, h('div', { class: 'ai4lab-toolbar' }, this.upload, this.uploadButton, this.folder, mkdir, useHere),
      this.errors, this.list);
    void this.cd('');
  }

  ownForm(): HTMLElement {
    const connect = h('button', { id: 'ai4lab-own-connect', class: 'jp-mod-styled', text: 'Connect' });
    connect.addEventListener('click', () => void busy(connect, this.ownErrors, async () => {
      const values = Object.fromEntries(Object.entries(this.own).map(([k, el]) => [k, el.value]));
      const { problems, body } = ownStorageBody(values);
      if (problems.length) {
        throw new Error(problems.join('; '));
      }
      await this.ctx.api.connectStorage(body);
      this.own.password.value = '';
      await this.cd('');
    }));
    this.disconnect.addEventListener('click', () => void busy(this.disconnect, this.ownErrors, async () => {
      await this.ctx.api.disconnectStorage();
      await this.cd('');
    }));
    const row = (label: string, el: HTMLElement) => h('label', { class: 'ai4lab-field' }, h('span', { text: label }), el);
    return h('details', { id: 'ai4lab-own-storage' }, h('summary', { text: 'Connect my own storage' }),
      row('Type', this.own.type), row('URL', this.own.url), row('S3 endpoint', this.own.endpoint_url),
      row('WebDAV server', this.own.vendor), row('User / key id', this.own.username), row('Password / secret key', this.own.password),
      h('div', { class: 'ai4lab-toolbar' }, connect, this.disconnect), this.ownErrors);
  }

  present(args?: Record<string, any>): void {
    void this.cd(args?.path ?? this.path);
  }

  async cd(path: string): Promise<void> {
    try {
      const listing = await this.ctx.api.listStorage(path);
      void this.ctx.api.me().then(me => { this.usage.textContent = usageText(me.storage); }, () => undefined);
      void this.ctx.api.storageWhere().then(w => {
        this.where.textContent = whereText(w);
        this.disconnect.hidden = w.source !== 'own';
      }, () => undefined);
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
