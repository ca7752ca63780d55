/** A tiny element builder and the shared bits of every panel (errors, badges, busy state). */

import { ApiError } from './api';

type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, any> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = String(value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'value' && 'value' in el) {
      (el as any).value = String(value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** The sentence to show for any error: the API's own reason, or the error's message. */
export function messageOf(err: unknown): string {
  if (err instanceof ApiError) {
    return err.message;
  }
  if (err instanceof Error) {
    return err.message.split('\n')[0];
  }
  return String(err);
}

export function errorBox(err: unknown): HTMLElement {
  return h('div', { class: 'ai4lab-error', role: 'alert', text: messageOf(err) });
}

/** Replace what `target` shows with an error message (the panel stays usable). */
export function showError(target: HTMLElement, err: unknown): void {
  target.replaceChildren(errorBox(err));
}

export const ACTIVE = ['queued', 'starting', 'running'];

export function badge(status: string): HTMLElement {
  const tone =
    status === 'running' || status === 'succeeded'
      ? 'ok'
      : status === 'failed'
        ? 'bad'
        : ACTIVE.includes(status)
          ? 'busy'
          : 'idle';
  return h('span', { class: `ai4lab-badge ai4lab-badge-${tone}`, 'data-status': status, text: status });
}

/** Run `fn` with the button disabled, showing any error in `errors`. */
export async function busy<T>(button: HTMLButtonElement, errors: HTMLElement, fn: () => Promise<T>): Promise<T | undefined> {
  button.disabled = true;
  errors.replaceChildren();
  try {
    return await fn();
  } catch (e) {
    showError(errors, e);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** `el.replaceChildren` that skips absent parts (null, undefined, false). */
export function fill(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren(...(children.flat().filter(c => c !== null && c !== undefined && c !== false) as (Node | string)[]));
}

/** The resources an item recommends that it will run without here, as a note (null when none). */
export function warningsOf(warnings: string[] | undefined): HTMLElement | null {
  if (!warnings?.length) {
    return null;
  }
  return h('ul', { class: 'ai4lab-warning', role: 'note' }, ...warnings.map(w => h('li', { text: w })));
}

/** A module's non-JSON answer: shown when it is an image or a sound, offered for download in any case. */
export function answerView(blob: Blob, type: string): HTMLElement {
  const url = URL.createObjectURL(blob);
  const ext = type.split('/')[1]?.replace(/[^a-z0-9]+/gi, '') || 'bin';
  const shown = type.startsWith('image/')
    ? h('img', { id: 'ai4lab-try-answer-image', src: url, alt: 'the module\'s answer', style: 'max-width: 100%' })
    : type.startsWith('audio/') ? h('audio', { id: 'ai4lab-try-answer-audio', src: url, controls: true }) : null;
  return h('div', { class: 'ai4lab-answer', 'data-type': type },
    h('p', { class: 'ai4lab-prediction', text: `Answer: ${type}, ${blob.size} bytes` }), shown,
    h('a', { id: 'ai4lab-try-download', href: url, download: `answer.${ext}`, text: 'Download' }));
}
