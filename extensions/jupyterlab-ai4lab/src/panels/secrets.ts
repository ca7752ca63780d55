/**
 * Secrets: my tokens and passwords for deployments and sessions, listed by name only.
 * Values are write-only here: typed into a password field, sent once, and cleared;
 * the platform never sends one back, so this panel never shows one.
 */

import { SecretEntry } from '../api';
import { busy, fill, h, showError } from '../dom';
import { Ctx, Panel } from './base';

/** The platform's rule for a secret's name (an environment variable's), checked before sending. */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const SECRET_NAME_MAX = 64;

/** Why `name` cannot name a secret, or null when it can (the platform says why for its reserved names). */
export function secretNameProblem(name: string): string | null {
  if (!name) {
    return 'Give the secret a name, e.g. HF_TOKEN';
  }
  if (name.length > SECRET_NAME_MAX) {
    return `A secret's name has at most ${SECRET_NAME_MAX} characters`;
  }
  if (!SECRET_NAME.test(name)) {
    return `"${name}" is not an environment variable name: use letters, digits and _, not starting with a digit`;
  }
  return null;
}

/** When a secret last changed, as the list shows it (the date and minute, or '' when unknown). */
export function changedText(entry: SecretEntry): string {
  const when = entry.updated_at ?? entry.created_at;
  return when ? when.replace('T', ' ').slice(0, 16) : '';
}

/** The request fields that give a deployment some of my secrets; none when none is chosen. */
export function secretsFields(names: string[], how: string): { secrets?: string[]; secrets_as?: string } {
  return names.length ? { secrets: names, secrets_as: how === 'files' ? 'files' : 'env' } : {};
}

/** Check boxes of my secrets' names and how to give them, for a deploy or training form (null: I have none). */
export function secretsChoice(entries: SecretEntry[], idPrefix = 'ai4lab-deploy'):
  { element: HTMLElement; read(): { secrets?: string[]; secrets_as?: string } } | null {
  if (!entries.length) {
    return null;
  }
  const boxes = entries.map(e => h('input', { type: 'checkbox', value: e.name, 'data-secret': e.name }));
  const how = h('select', { id: `${idPrefix}-secrets-as` },
    h('option', { value: 'env', text: 'as environment variables' }),
    h('option', { value: 'files', text: 'as files in $AI4LAB_SECRETS_DIR' }));
  const element = h('fieldset', { id: `${idPrefix}-secrets`, class: 'ai4lab-field' },
    h('legend', { text: 'Secrets to give it' }),
    ...boxes.map(b => h('label', { class: 'ai4lab-check' }, b, ' ', h('code', { text: b.value }))), how);
  return { element, read: () => secretsFields(boxes.filter(b => b.checked).map(b => b.value), how.value) };
}

export class SecretsPanel extends Panel {
  private list = h('ul', { id: 'ai4lab-secrets-list', class: 'ai4lab-files' });
  private errors = h('div', { class: 'ai4lab-errors' });
  private name = h('input', { id: 'ai4lab-secret-name', type: 'text', placeholder: 'name, e.g. HF_TOKEN', autocomplete: 'off' });
  private value = h('input', { id: 'ai4lab-secret-value', type: 'password', placeholder: 'value', autocomplete: 'new-password' });
  private save = h('button', { id: 'ai4lab-secret-save', class: 'jp-mod-styled', text: 'Save' });
  private names = new Set<string>();

  constructor(ctx: Ctx) {
    super(ctx, 'secrets', 'Secrets');
    this.save.addEventListener('click', () => void this.store());
    this.node.append(h('h2', { text: 'Secrets' }),
      h('p', { class: 'ai4lab-note', text: 'Tokens and passwords for your deployments and sessions (given as environment '
        + 'variables or as files in $AI4LAB_SECRETS_DIR when you name them). Values are never shown again.' }),
      h('div', { class: 'ai4lab-toolbar' }, this.name, this.value, this.save),
      this.errors, this.list);
    void this.refresh();
  }

  present(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      const rows = await this.ctx.api.secrets();
      this.names = new Set(rows.map(r => r.name));
      fill(this.list, ...rows.map(r => this.entry(r)));
      if (!rows.length) {
        this.list.append(h('li', { class: 'ai4lab-note', text: 'no secrets yet' }));
      }
    } catch (e) {
      showError(this.errors, e);
    }
  }

  entry(row: SecretEntry): HTMLElement {
    const del = h('button', { class: 'jp-mod-styled jp-mod-warn ai4lab-small', 'data-action': 'delete', text: 'Delete' });
    del.addEventListener('click', () => void busy(del, this.errors, async () => {
      if (!window.confirm(`Delete the secret ${row.name}? Deployments started later cannot use it.`)) {
        return;
      }
      await this.ctx.api.deleteSecret(row.name);
      await this.refresh();
    }));
    return h('li', { 'data-secret': row.name }, h('code', { text: row.name }),
      h('small', { text: ` changed ${changedText(row)} ` }), del);
  }

  async store(): Promise<void> {
    await busy(this.save, this.errors, async () => {
      const name = this.name.value.trim();
      const problem = secretNameProblem(name);
      if (problem) {
        throw new Error(problem);
      }
      if (!this.value.value) {
        throw new Error('Type the value to keep');
      }
      const replace = this.names.has(name);
      if (replace && !window.confirm(`Replace the value of ${name}?`)) {
        return;
      }
      await this.ctx.api.setSecret(name, this.value.value, replace);
      this.value.value = '';
      this.name.value = '';
      await this.refresh();
    });
  }
}
