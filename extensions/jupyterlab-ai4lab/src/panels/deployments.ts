/**
 * Deployments & trainings: everything of mine with status badges; for the selected one
 * its live log (server-sent events), its live metric plot (from the MLflow run), stop,
 * the MLflow link, "deploy this model" and "publish to marketplace" for trainings.
 */

import { Deployment } from '../api';
import { lineChart } from '../chart';
import { ACTIVE, badge, busy, fill, h, showError } from '../dom';
import { Ctx, Panel } from './base';

export class DeploymentsPanel extends Panel {
  private list = h('tbody');
  private errors = h('div', { class: 'ai4lab-errors' });
  private detail = h('div', { id: 'ai4lab-dep-detail', class: 'ai4lab-detail' });
  private selected: string | null = null;
  private events: EventSource | null = null;
  private stopMetrics: (() => void) | null = null;
  private known: Deployment[] = [];
  /** Draw the selected training's metrics now (its last values arrive as it ends). */
  private redraw: (() => void) | null = null;

  constructor(ctx: Ctx) {
    super(ctx, 'deployments', 'Deployments & trainings');
    const refresh = h('button', { class: 'jp-mod-styled', id: 'ai4lab-dep-refresh', text: 'Refresh', onclick: () => void this.refresh() });
    this.node.append(
      h('h2', { text: 'Deployments & trainings' }),
      h('div', { class: 'ai4lab-toolbar' }, refresh), this.errors,
      h('table', { id: 'ai4lab-dep-list', class: 'ai4lab-table' },
        h('thead', {}, h('tr', {}, ...['Kind', 'Item', 'Title', 'Status', 'Started'].map(t => h('th', { text: t })))), this.list),
      this.detail);
    void this.refresh();
    this.every(3000, () => this.isVisible && void this.refresh());
  }

  present(args?: Record<string, any>): void {
    void this.refresh().then(() => args?.select && this.select(args.select));
  }

  async refresh(): Promise<void> {
    try {
      const all = await this.ctx.api.deployments();
      this.known = all.filter(d => d.kind !== 'ide' || ACTIVE.includes(d.status));
      fill(this.errors);
      fill(this.list, ...this.known.map(d => h('tr', {
        'data-id': d.id, class: d.id === this.selected ? 'ai4lab-selected' : null, onclick: () => this.select(d.id)
      },
      h('td', { text: d.kind }), h('td', { text: d.spec?.item ?? '' }), h('td', { text: d.spec?.title || d.name || d.id }),
      h('td', {}, badge(d.status)), h('td', { text: (d.created_at ?? '').replace('T', ' ').slice(0, 19) }))));
      const current = this.known.find(d => d.id === this.selected);
      if (current) {
        const ended = this.detail.querySelector('.ai4lab-dep-head')?.getAttribute('data-status') !== current.status && !ACTIVE.includes(current.status);
        this.updateHeader(current);
        if (ended) {
          this.redraw?.();
        }
      }
    } catch (e) {
      showError(this.errors, e);
    }
  }

  select(id: string): void {
    this.selected = id;
    this.events?.close();
    this.stopMetrics?.();
    this.redraw = null;
    this.list.querySelectorAll('tr').forEach(tr => tr.classList.toggle('ai4lab-selected', tr.dataset.id === id));
    const dep = this.known.find(d => d.id === id);
    const logs = h('pre', { id: 'ai4lab-dep-logs', class: 'ai4lab-logs' });
    const chart = h('div', { id: 'ai4lab-dep-chart', class: 'ai4lab-charts' });
    fill(this.detail, h('div', { class: 'ai4lab-dep-head' }), h('div', { class: 'ai4lab-errors' }),
      dep?.kind === 'training' ? h('section', {}, h('h3', { text: 'Metrics' }), chart) : null,
      h('h3', { text: 'Log' }), logs);
    if (dep) {
      this.updateHeader(dep);
    }
    this.followLogs(id, logs);
    if (dep?.kind === 'training') {
      const draw = async () => {
        try {
          const m = await this.ctx.api.metrics(id);
          // one small chart per metric: a loss of 10 would flatten an accuracy of 0.9 on a shared axis
          const names = Object.keys(m.metrics).sort();
          fill(chart, ...(names.length ? names.map(k => lineChart({ [k]: m.metrics[k] }, { width: 300, height: 160, pad: 28 })) : [lineChart({})]));
          const d = this.known.find(x => x.id === id);
          if (d && !ACTIVE.includes(d.status)) {
            this.stopMetrics?.();
          }
        } catch (e) {
          showError(chart, e);
        }
      };
      void draw();
      this.stopMetrics = this.every(2000, () => void draw());
      this.redraw = () => void draw();
    }
  }

  followLogs(id: string, target: HTMLElement): void {
    // EventSource cannot send headers: the hub's XSRF check takes the token as a query argument
    const xsrf = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/)?.[1];
    const url = `${this.ctx.base}ai4lab/api/deployments/${id}/logs?follow=1&tail=300${xsrf ? `&_xsrf=${xsrf}` : ''}`;
    const source = new EventSource(url, { withCredentials: true });
    let ended = false;
    this.events = source;
    source.onmessage = e => {
      target.append(e.data + '\n');
      target.scrollTop = target.scrollHeight;
    };
    source.addEventListener('end', e => {
      ended = true;
      source.close();
      const status = JSON.parse((e as MessageEvent).data || '{}').status;
      target.append(`— ${status} —\n`);
      void this.refresh();
    });
    source.onerror = () => {
      // the stream broke (or was refused): show the log as it is now, once
      source.close();
      if (!ended && this.selected === id) {
        void this.ctx.api.logs(id, 300).then(t => (target.textContent = t), e => showError(target, e));
      }
    };
  }

  updateHeader(d: Deployment): void {
    const head = this.detail.querySelector('.ai4lab-dep-head');
    const errors = this.detail.querySelector<HTMLElement>('.ai4lab-errors');
    if (!head || !errors || head.getAttribute('data-status') === d.status) {
      return;
    }
    head.setAttribute('data-status', d.status);
    const actions: HTMLElement[] = [];
    if (ACTIVE.includes(d.status)) {
      const stop = h('button', { id: 'ai4lab-dep-stop', class: 'jp-mod-styled jp-mod-warn', text: d.kind === 'training' ? 'Cancel' : 'Stop' });
      stop.addEventListener('click', () => void busy(stop, errors, async () => {
        await this.ctx.api.stop(d.id);
        await this.refresh();
      }));
      actions.push(stop);
    }
    if (d.endpoints?.mlflow_run) {
      actions.push(h('a', { id: 'ai4lab-dep-mlflow', href: d.endpoints.mlflow_run, target: '_blank', rel: 'noopener', text: 'MLflow run' }));
    }
    if (d.kind === 'module' && d.status === 'running') {
      actions.push(h('button', { class: 'jp-mod-styled', text: 'Try it', onclick: () => this.ctx.open('deploy', { item: d.spec?.item }) }));
    }
    if (d.kind === 'training' && d.status === 'succeeded') {
      const deploy = h('button', { id: 'ai4lab-dep-deploy', class: 'jp-mod-styled jp-mod-accept', text: 'Deploy this model' });
      deploy.addEventListener('click', () => void busy(deploy, errors, async () => {
        const dep = await this.ctx.api.create({ kind: 'module', item: d.spec?.item, weights: d.id, title: `${d.spec?.item} from ${d.id}`.slice(0, 45) });
        this.ctx.open('deploy', { item: d.spec?.item, watch: dep });
      }));
      actions.push(deploy, this.publishForm(d, errors));
    }
    fill(head, 
      h('h3', {}, `${d.kind} ${d.spec?.item ?? d.name} `, badge(d.status)),
      d.status_reason ? h('p', { class: 'ai4lab-reason', text: d.status_reason.split('\n').slice(0, 3).join(' ') }) : null,
      h('div', { class: 'ai4lab-actions' }, ...actions));
  }

  publishForm(d: Deployment, errors: HTMLElement): HTMLElement {
    const id = h('input', { id: 'ai4lab-pub-id', type: 'text', value: `${d.spec?.item}-${d.id}`.slice(0, 60).toLowerCase() });
    const image = h('input', { id: 'ai4lab-pub-image', type: 'text', placeholder: 'docker image for clusters (optional)' });
    const done = h('span', { class: 'ai4lab-note' });
    const go = h('button', { id: 'ai4lab-pub-button', class: 'jp-mod-styled', text: 'Publish to marketplace' });
    go.addEventListener('click', () => void busy(go, errors, async () => {
      const parent = await this.ctx.api.item('modules', d.spec?.item);
      const metadata = { ...(parent.metadata ?? {}), title: `${parent.title} (retrained ${d.id})`.slice(0, 80) };
      const out = await this.ctx.api.publish({
        id: id.value.trim(), metadata, docker_image: image.value.trim() || parent.docker_image || `${d.owner}/${id.value.trim()}:latest`,
        visibility: 'private',
        lineage: { parent: d.spec?.item, dataset: d.spec?.dataset, training: d.id, mlflow_run: d.endpoints?.mlflow_run_id }
      });
      done.textContent = `Published as ${out.id ?? id.value} (private)`;
    }));
    return h('details', { class: 'ai4lab-publish' }, h('summary', { text: 'Publish to marketplace' }), id, image, go, done);
  }
}
