import { describe, expect, it } from 'vitest';

import { ApiError, Platform, catalogQuery, encodePath, errorText } from '../src/api';
import { answerView, messageOf, warningsOf } from '../src/dom';

describe('errorText', () => {
  it('takes the platform detail as is', () => {
    expect(errorText(400, '{"detail": "epochs: must be between 1 and 1000", "status": 400}')).toBe('epochs: must be between 1 and 1000');
  });
  it('turns FastAPI validation lists into a sentence', () => {
    const body = JSON.stringify({ detail: [{ loc: ['body', 'kind'], msg: 'Field required' }, { loc: ['query', 'page'], msg: 'too small' }] });
    expect(errorText(422, body)).toBe('kind: Field required; page: too small');
  });
  it('strips HTML pages down to their words', () => {
    const t = errorText(502, '<html><head><style>p{}</style></head><body><h1>Bad Gateway</h1><p>proxy <b>down</b></p></body></html>');
    expect(t).toBe('the platform answered 502: Bad Gateway proxy down');
    expect(t).not.toContain('<');
  });
  it('says so when there is nothing to say', () => {
    expect(errorText(500, '')).toBe('the platform answered 500');
  });
});

describe('catalogQuery', () => {
  it('drops empty filters and encodes the rest', () => {
    expect(catalogQuery({ q: 'digit & más', task: '', gpu: 'true', facets: false, page: 1 })).toBe('?q=digit+%26+m%C3%A1s&gpu=true&facets=false&page=1');
    expect(catalogQuery({ q: '' })).toBe('');
  });
});

describe('encodePath', () => {
  it('encodes each segment and drops empty ones', () => {
    expect(encodePath('/datasets//my data/a#b.csv')).toBe('datasets/my%20data/a%23b.csv');
  });
});

describe('Platform', () => {
  it('sends JSON bodies to the server extension paths and parses answers', async () => {
    const seen: { path: string; init?: RequestInit }[] = [];
    const api = new Platform(async (path, init) => {
      seen.push({ path, init });
      return new Response(JSON.stringify({ id: 'abc', status: 'starting' }), { status: 201 });
    });
    const dep = await api.create({ kind: 'training', item: 'ai4lab-digits' });
    expect(dep.id).toBe('abc');
    expect(seen[0].path).toBe('api/deployments');
    expect(seen[0].init?.method).toBe('POST');
    expect(JSON.parse(String(seen[0].init?.body))).toEqual({ kind: 'training', item: 'ai4lab-digits' });
    await api.listStorage('datasets/digits');
    expect(seen[1].path).toBe('api/storage/datasets/digits');
  });
  it('raises ApiError with the readable reason on 4xx/5xx', async () => {
    const api = new Platform(async () => new Response('{"detail": "no such deployment"}', { status: 404 }));
    const err = await api.deployment('x').catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(404);
    expect(messageOf(err)).toBe('no such deployment');
  });
  it('explains a server that cannot be reached', async () => {
    const api = new Platform(async () => {
      throw new TypeError('Failed to fetch');
    });
    const err = await api.me().catch(e => e);
    expect(err.status).toBe(0);
    expect(err.message).toBe('the Jupyter server cannot be reached (Failed to fetch)');
  });
});

describe('messageOf', () => {
  it('never shows a stack trace', () => {
    const e = new Error('boom\n    at foo (x.js:1:1)');
    expect(messageOf(e)).toBe('boom');
  });
});

describe('warningsOf', () => {
  it('is nothing without warnings', () => {
    expect(warningsOf(undefined)).toBeNull();
    expect(warningsOf([])).toBeNull();
  });
  it('lists what the item will run without, as text', () => {
    const el = warningsOf(['this module recommends 1 GPU; it will run on CPU and may be slow', '<b>x</b>'])!;
    expect(el.className).toBe('ai4lab-warning');
    expect(el.getAttribute('role')).toBe('note');
    expect([...el.querySelectorAll('li')].map(li => li.textContent)).toEqual([
      'this module recommends 1 GPU; it will run on CPU and may be slow', '<b>x</b>']);
    expect(el.querySelector('b')).toBeNull();
  });
});

describe('answerView', () => {
  it('shows an image and offers it for download', () => {
    URL.createObjectURL = () => 'blob:answer';
    const el = answerView(new Blob([new Uint8Array([137, 80, 78, 71])], { type: 'image/png' }), 'image/png');
    expect(el.querySelector('img')!.getAttribute('src')).toBe('blob:answer');
    expect(el.querySelector('a')!.getAttribute('download')).toBe('answer.png');
    expect(el.textContent).toContain('image/png, 4 bytes');
  });
  it('only offers a zip for download', () => {
    URL.createObjectURL = () => 'blob:zip';
    const el = answerView(new Blob([new Uint8Array(10)]), 'application/zip');
    expect(el.querySelector('img')).toBeNull();
    expect(el.querySelector('a')!.getAttribute('download')).toBe('answer.zip');
  });
});
