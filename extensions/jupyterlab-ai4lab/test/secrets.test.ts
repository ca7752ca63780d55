import { describe, expect, it } from 'vitest';

import { Platform } from '../src/api';
import { SecretsPanel, changedText, secretNameProblem, secretsChoice, secretsFields } from '../src/panels/secrets';

type Seen = { path: string; method: string; body: any };

/** A platform that keeps secrets as the real one answers: names and times, never values. */
function fakePlatform(): { api: Platform; seen: Seen[]; stored: Map<string, string> } {
  const seen: Seen[] = [];
  const stored = new Map<string, string>([['HF_TOKEN', 'hf_old']]);
  const api = new Platform(async (path, init) => {
    const method = init?.method ?? 'GET';
    const body = init?.body ? JSON.parse(String(init.body)) : null;
    seen.push({ path, method, body });
    const listing = () => [...stored.keys()].sort().map(name => ({ name, created_at: '2026-12-02T06:00:00+00:00', updated_at: '2026-12-02T06:30:00+00:00' }));
    if (path === 'api/secrets' && method === 'GET') {
      return new Response(JSON.stringify(listing()), { status: 200 });
    }
    if (path === 'api/secrets' && method === 'POST') {
      if (stored.has(body.name)) {
        return new Response(JSON.stringify({ detail: `you have a secret '${body.name}' already` }), { status: 409 });
      }
      stored.set(body.name, body.value);
      return new Response(JSON.stringify({ name: body.name, created_at: null, updated_at: null }), { status: 201 });
    }
    const name = decodeURIComponent(path.replace('api/secrets/', ''));
    if (method === 'PUT') {
      stored.set(name, body.value);
      return new Response(JSON.stringify({ name, created_at: null, updated_at: null }), { status: 200 });
    }
    if (method === 'DELETE') {
      stored.delete(name);
      return new Response(JSON.stringify({ deleted: name }), { status: 200 });
    }
    return new Response('{"detail": "unexpected"}', { status: 500 });
  });
  return { api, seen, stored };
}

const tick = () => new Promise(resolve => setTimeout(resolve, 0));

function panelWith(api: Platform): SecretsPanel {
  return new SecretsPanel({ api, open: () => undefined, reveal: () => undefined, base: '/' });
}

describe('secretNameProblem', () => {
  it('accepts environment variable names', () => {
    expect(secretNameProblem('HF_TOKEN')).toBeNull();
    expect(secretNameProblem('_x1')).toBeNull();
  });
  it('explains what is wrong', () => {
    expect(secretNameProblem('')).toContain('Give the secret a name');
    expect(secretNameProblem('1TOKEN')).toContain('not an environment variable name');
    expect(secretNameProblem('MY-TOKEN')).toContain('not an environment variable name');
    expect(secretNameProblem('A'.repeat(65))).toContain('at most 64');
  });
});

describe('changedText', () => {
  it('shows the date and minute of the last change', () => {
    expect(changedText({ name: 'X', created_at: '2026-12-01T10:00:00+00:00', updated_at: '2026-12-02T06:30:59+00:00' })).toBe('2026-12-02 06:30');
    expect(changedText({ name: 'X', created_at: null, updated_at: null })).toBe('');
  });
});

describe('SecretsPanel', () => {
  it('lists names only, stores a new secret and clears the value field', async () => {
    const { api, seen, stored } = fakePlatform();
    const panel = panelWith(api);
    await tick();
    const items = panel.node.querySelectorAll('#ai4lab-secrets-list li[data-secret]');
    expect([...items].map(li => li.getAttribute('data-secret'))).toEqual(['HF_TOKEN']);
    expect(panel.node.textContent).not.toContain('hf_old');

    (panel.node.querySelector('#ai4lab-secret-name') as HTMLInputElement).value = 'S3_KEY';
    const value = panel.node.querySelector('#ai4lab-secret-value') as HTMLInputElement;
    expect(value.type).toBe('password');
    value.value = 's3-value';
    await panel.store();
    expect(seen.find(s => s.method === 'POST')).toEqual({ path: 'api/secrets', method: 'POST', body: { name: 'S3_KEY', value: 's3-value' } });
    expect(stored.get('S3_KEY')).toBe('s3-value');
    expect(value.value).toBe('');
    expect(panel.node.textContent).not.toContain('s3-value');
    expect(panel.node.querySelectorAll('#ai4lab-secrets-list li[data-secret]').length).toBe(2);
  });

  it('replaces an existing secret with PUT after asking, and refuses a bad name without sending', async () => {
    const { api, seen, stored } = fakePlatform();
    const panel = panelWith(api);
    await tick();
    const confirm = window.confirm;
    window.confirm = () => true;
    try {
      (panel.node.querySelector('#ai4lab-secret-name') as HTMLInputElement).value = 'HF_TOKEN';
      (panel.node.querySelector('#ai4lab-secret-value') as HTMLInputElement).value = 'hf_new';
      await panel.store();
      expect(seen.find(s => s.method === 'PUT')).toEqual({ path: 'api/secrets/HF_TOKEN', method: 'PUT', body: { value: 'hf_new' } });
      expect(stored.get('HF_TOKEN')).toBe('hf_new');

      const before = seen.length;
      (panel.node.querySelector('#ai4lab-secret-name') as HTMLInputElement).value = '9lives';
      (panel.node.querySelector('#ai4lab-secret-value') as HTMLInputElement).value = 'x';
      await panel.store();
      expect(seen.length).toBe(before);
      expect(panel.node.querySelector('.ai4lab-error')?.textContent).toContain('not an environment variable name');
    } finally {
      window.confirm = confirm;
    }
  });

  it('deletes a secret after asking', async () => {
    const { api, stored } = fakePlatform();
    const panel = panelWith(api);
    await tick();
    const confirm = window.confirm;
    window.confirm = () => true;
    try {
      (panel.node.querySelector('li[data-secret="HF_TOKEN"] button[data-action="delete"]') as HTMLButtonElement).click();
      await tick();
      await tick();
      expect(stored.has('HF_TOKEN')).toBe(false);
      expect(panel.node.querySelector('#ai4lab-secrets-list')?.textContent).toContain('no secrets yet');
    } finally {
      window.confirm = confirm;
    }
  });
});

describe('secretsChoice', () => {
  const entries = [{ name: 'HF_TOKEN', created_at: null, updated_at: null }, { name: 'S3_KEY', created_at: null, updated_at: null }];
  it('offers my secrets by name and sends only the chosen ones', () => {
    const choice = secretsChoice(entries)!;
    expect(choice.read()).toEqual({});
    const boxes = choice.element.querySelectorAll<HTMLInputElement>('input[type=checkbox]');
    expect([...boxes].map(b => b.value)).toEqual(['HF_TOKEN', 'S3_KEY']);
    boxes[1].checked = true;
    expect(choice.read()).toEqual({ secrets: ['S3_KEY'], secrets_as: 'env' });
    (choice.element.querySelector('select') as HTMLSelectElement).value = 'files';
    expect(choice.read()).toEqual({ secrets: ['S3_KEY'], secrets_as: 'files' });
  });
  it('is absent without secrets, and the fields default to env', () => {
    expect(secretsChoice([])).toBeNull();
    expect(secretsFields(['A'], 'anything')).toEqual({ secrets: ['A'], secrets_as: 'env' });
    expect(secretsFields([], 'files')).toEqual({});
  });
});
