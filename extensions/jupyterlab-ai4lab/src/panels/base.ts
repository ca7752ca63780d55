/** What every panel shares: the platform client, a way to open another panel, timers. */

import { Widget } from '@lumino/widgets';

import { Platform } from '../api';

export type PanelName = 'marketplace' | 'deployments' | 'deploy' | 'flower' | 'storage' | 'secrets';

export interface Ctx {
  api: Platform;
  /** Open (or bring to front) another panel and hand it arguments. */
  open(panel: PanelName, args?: Record<string, any>): void;
  /** Show a workspace folder in the file browser. */
  reveal(path: string): void;
  /** Base URL of the server extension (for EventSource). */
  base: string;
}

export abstract class Panel extends Widget {
  private timers: number[] = [];

  constructor(
    protected readonly ctx: Ctx,
    name: PanelName,
    label: string
  ) {
    super();
    this.id = `ai4lab-${name}`;
    this.title.label = label;
    this.title.caption = `ai4lab: ${label}`;
    this.title.closable = true;
    this.addClass('ai4lab-panel');
  }

  /** Called with the arguments of `ctx.open` each time the panel is opened (not Lumino's `show`). */
  abstract present(args?: Record<string, any>): void;

  /** Repeat `fn` every `ms` while the panel lives; returns a function that stops it. */
  protected every(ms: number, fn: () => void): () => void {
    const t = window.setInterval(fn, ms);
    this.timers.push(t);
    return () => {
      window.clearInterval(t);
      this.timers = this.timers.filter(x => x !== t);
    };
  }

  dispose(): void {
    this.timers.forEach(t => window.clearInterval(t));
    this.timers = [];
    super.dispose();
  }
}
