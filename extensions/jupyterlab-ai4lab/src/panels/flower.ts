/**
 * Federated learning (Flower): start a server from the strategy form, copy the client
 * snippet (address + token), watch per-round metrics and connected clients.
 * Built on the platform's Flower API (deployments of kind "tool", item ai4lab-flower).
 */

import { Deployment, FlowerState } from '../api';
import { Series, lineChart } from '../chart';
import { ACTIVE, badge, busy, fill, h, showError } from '../dom';
import { checkNumber } from '../forms';
import { Ctx, Panel } from './base';

export const FLOWER_ITEM = 'ai4lab-flower';
/** Strategies the platform's Flower server offers, with the parameters each takes (FLOWER-API.md). */
export const STRATEGY_PARAMS: Record<string, ('proximal_mu' | 'server_learning_rate')[]> = {
  FedAvg: [], FedMedian: [], FedProx: ['proximal_mu'], FedAvgM: ['server_learning_rate'],
  FedOpt: ['server_learning_rate'], FedAdam: ['server_learning_rate'], FedYogi: ['server_learning_rate']
};
export const STRATEGIES = Object.keys(STRATEGY_PARAMS);

/** Per-round metrics (and loss) as chart series. */
export function roundSeries(state: Pick<FlowerState, 'rounds'>): Series {
  const out: Series = {};
  for (const r of state.rounds ?? []) {
    for (const [k, v] of Object.entries(r.metrics ?? {})) {
      if (typeof v === 'number') {
        (out[k] ??= []).push({ step: r.round, value: v });
      }
    }
    if (typeof r.loss === 'number') {
      (out.loss ??= []).push({ step: r.round, value: r.loss });
    }
  }
  return out;
}

/** One line per finished round: its metrics, loss and how many clients took part. */
export function roundText(r: FlowerState['rounds'][number]): string {
  const metrics = Object.entries(r.metrics ?? {}).map(([k, v]) => `${k} ${typeof v === 'number' ? v.toFixed(3) : v}`);
  if (typeof r.loss === 'number') {
    metrics.push(`loss ${r.loss.toFixed(3)}`);
  }
  const who = r.clients !== undefined ? `, ${r.clients} client${r.clients === 1 ? '' : 's'}` : '';
  return `Round ${r.round}: ${metrics.join(', ') || 'no metrics'}${who}`;
}

export interface StrategyInputs {
  rounds: string;
  strategy: string;
  proximal_mu: string;
  server_learning_rate: string;
  min_fit_clients: string;
  min_available_clients: string;
  local_epochs: string;
  metric: string;
  dp: boolean;
  clipping_norm: string;
  noise_multiplier: string;
}

/** The `config` of a Flower deployment from the form's raw values, or the problems. */
export function flowerConfig(v: StrategyInputs): { config: Record<string, any>; problems: string[] } {
  const params = STRATEGY_PARAMS[v.strategy] ?? [];
  const problems = [
    checkNumber('Rounds', v.rounds, [1, 1000], true),
    checkNumber('Minimum clients per round', v.min_fit_clients, [2, 1000], true),
    checkNumber('Minimum clients connected', v.min_available_clients, [2, 1000], true),
    checkNumber('Local epochs', v.local_epochs, [1, 1000], true),
    params.includes('proximal_mu') ? checkNumber('Proximal mu', v.proximal_mu, [1e-9, 100]) : null,
    params.includes('server_learning_rate') ? checkNumber('Server learning rate', v.server_learning_rate, [1e-6, 100]) : null,
    v.dp ? checkNumber('Clipping norm', v.clipping_norm, [1e-6, 1e6]) : null,
    v.dp ? checkNumber('Noise multiplier', v.noise_multiplier, [0, 1e6]) : null
  ].filter((p): p is string => p !== null);
  if (!(v.strategy in STRATEGY_PARAMS)) {
    problems.push(`Strategy: choose one of ${STRATEGIES.join(', ')}`);
  }
  if (!problems.length && Number(v.min_fit_clients) > Number(v.min_available_clients)) {
    problems.push('Minimum clients per round cannot exceed the minimum connected');
  }
  return {
    problems,
    config: {
      rounds: Number(v.rounds),
      strategy: v.strategy,
      strategy_params: Object.fromEntries(params.map(p => [p, Number(v[p])])),
      min_fit_clients: Number(v.min_fit_clients),
      min_available_clients: Number(v.min_available_clients),
      local_epochs: Number(v.local_epochs),
      metric: v.metric.trim() || 'accuracy',
      dp: v.dp ? { clipping_norm: Number(v.clipping_norm), noise_multiplier: Number(v.noise_multiplier) } : null,
      secure_aggregation: false
    }
  };
}

export class FlowerPanel extends Panel {
  private inputs = {
    rounds: h('input', { id: 'ai4lab-fl-rounds', type: 'number', min: 1, value: 3 }),
    strategy: h('select', { id: 'ai4lab-fl-strategy' }, STRATEGIES.map(s => h('option', { value: s, text: s }))),
    proximal_mu: h('input', { id: 'ai4lab-fl-mu', type: 'number', step: 'any', value: 0.1 }),
    server_learning_rate: h('input', { id: 'ai4lab-fl-lr', type: 'number', step: 'any', value: 1.0 }),
    min_fit_clients: h('input', { id: 'ai4lab-fl-min-fit', type: 'number', min: 2, value: 2 }),
    min_available_clients: h('input', { id: 'ai4lab-fl-min-avail', type: 'number', min: 2, value: 2 }),
    local_epochs: h('input', { id: 'ai4lab-fl-epochs', type: 'number', min: 1, value: 1 }),
    metric: h('input', { id: 'ai4lab-fl-metric', type: 'text', value: 'accuracy' }),
    dp: h('input', { id: 'ai4lab-fl-dp', type: 'checkbox' }),
    clipping_norm: h('input', { id: 'ai4lab-fl-clip', type: 'number', step: 'any', value: 1.0 }),
    noise_multiplier: h('input', { id: 'ai4lab-fl-noise', type: 'number', step: 'any', value: 0.1 })
  };
  private titleInput = h('input', { id: 'ai4lab-fl-title', type: 'text', value: 'federated run' });
  private startButton = h('button', { id: 'ai4lab-fl-start', class: 'jp-mod-styled jp-mod-accept', text: 'Start Flower server' });
  private servers = h('select', { id: 'ai4lab-fl-servers' });
  private errors = h('div', { class: 'ai4lab-errors' });
  private view = h('div', { id: 'ai4lab-fl-view' });
  private current: string | null = null;
  private stopPoll: (() => void) | null = null;

  constructor(ctx: Ctx) {
    super(ctx, 'flower', 'Federated (Flower)');
    const i = this.inputs;
    const field = (label: string, input: HTMLElement) => h('label', { class: 'ai4lab-field', 'data-for': input.id }, h('span', { class: 'ai4lab-field-name', text: label }), input);
    this.startButton.addEventListener('click', () => void this.start());
    this.servers.addEventListener('change', () => this.servers.value && this.follow(this.servers.value));
    this.node.append(h('h2', { text: 'Federated learning (Flower)' }),
      h('fieldset', { class: 'ai4lab-form' }, h('legend', { text: 'Server and strategy' }),
        field('Title', this.titleInput), field('Rounds', i.rounds), field('Strategy', i.strategy), field('Proximal mu (FedProx)', i.proximal_mu),
        field('Server learning rate', i.server_learning_rate), field('Minimum clients per round', i.min_fit_clients),
        field('Minimum clients connected', i.min_available_clients), field('Local epochs per round', i.local_epochs),
        field('Metric to aggregate', i.metric),
        field('Differential privacy', i.dp), field('Clipping norm', i.clipping_norm), field('Noise multiplier', i.noise_multiplier),
        this.startButton),
      this.errors, field('My Flower servers', this.servers), this.view);
    // show only the parameters that apply (the platform refuses the others)
    const sync = () => {
      const params: string[] = STRATEGY_PARAMS[i.strategy.value] ?? [];
      for (const [name, input] of [['proximal_mu', i.proximal_mu], ['server_learning_rate', i.server_learning_rate]] as const) {
        (this.node.querySelector(`[data-for=${input.id}]`) as HTMLElement).hidden = !params.includes(name);
      }
      for (const input of [i.clipping_norm, i.noise_multiplier]) {
        (this.node.querySelector(`[data-for=${input.id}]`) as HTMLElement).hidden = !i.dp.checked;
      }
    };
    i.strategy.addEventListener('change', sync);
    i.dp.addEventListener('change', sync);
    sync();
    void this.loadServers();
  }

  present(args?: Record<string, any>): void {
    void this.loadServers(args?.select);
  }

  async loadServers(select?: string): Promise<void> {
    try {
      const deps = (await this.ctx.api.deployments('tool')).filter(d => d.spec?.item === FLOWER_ITEM || (d as any).item === FLOWER_ITEM);
      fill(this.servers, h('option', { value: '', text: deps.length ? 'choose…' : 'none yet' }),
        ...deps.map(d => h('option', { value: d.id, text: `${d.spec?.title || d.name || d.id} — ${d.status}` })));
      const pick = select ?? this.current;
      if (pick && deps.some(d => d.id === pick)) {
        this.servers.value = pick;
      }
    } catch (e) {
      showError(this.errors, e);
    }
  }

  async start(): Promise<void> {
    const raw = Object.fromEntries(Object.entries(this.inputs).map(([k, el]) =>
      [k, el instanceof HTMLInputElement && el.type === 'checkbox' ? el.checked : el.value])) as unknown as StrategyInputs;
    const { config, problems } = flowerConfig(raw);
    if (problems.length) {
      showError(this.errors, new Error(problems.join('; ')));
      return;
    }
    const dep = await busy(this.startButton, this.errors, () =>
      this.ctx.api.create({ kind: 'tool', item: FLOWER_ITEM, title: this.titleInput.value.trim(), config }));
    if (dep) {
      await this.loadServers(dep.id);
      this.follow(dep.id);
    }
  }

  follow(id: string): void {
    this.current = id;
    this.stopPoll?.();
    const head = h('div', { class: 'ai4lab-dep-head' });
    const errors = h('div', { class: 'ai4lab-errors' });
    const snippet = h('pre', { id: 'ai4lab-fl-snippet', class: 'ai4lab-logs' });
    const copy = h('button', { id: 'ai4lab-fl-copy', class: 'jp-mod-styled', text: 'Copy client snippet' });
    copy.addEventListener('click', () => void navigator.clipboard?.writeText(snippet.textContent ?? '').then(() => (copy.textContent = 'Copied')));
    const chart = h('div', { id: 'ai4lab-fl-chart' });
    const rounds = h('ul', { id: 'ai4lab-fl-round-list' });
    const cert = h('pre', { id: 'ai4lab-fl-cert', class: 'ai4lab-logs' });
    const certBox = h('details', { hidden: true }, h('summary', { text: 'Server certificate (save as flower-server.pem)' }), cert);
    const clients = h('ul', { id: 'ai4lab-fl-clients' });
    const stop = h('button', { id: 'ai4lab-fl-stop', class: 'jp-mod-styled jp-mod-warn', text: 'Stop server' });
    stop.addEventListener('click', () => void busy(stop, errors, async () => {
      await this.ctx.api.stop(id);
      await this.loadServers(id);
    }));
    fill(this.view, head, errors, h('h3', { text: 'Join as a client' }), snippet, copy, certBox,
      h('h3', { text: 'Rounds' }), chart, rounds, h('h3', { text: 'Clients' }), clients, stop);
    const poll = async () => {
      try {
        const [dep, state] = await Promise.all([this.ctx.api.deployment(id), this.ctx.api.flower(id)]);
        if (!snippet.textContent && dep.status === 'running') {
          const t = await this.ctx.api.flowerToken(id);
          snippet.textContent = t.snippet;
          cert.textContent = t.certificate ?? '';
          certBox.hidden = !t.certificate;
        }
        this.renderState(head, dep, state);
        fill(chart, lineChart(roundSeries(state)));
        fill(rounds, ...(state.rounds ?? []).map(r => h('li', { 'data-round': r.round, text: roundText(r) })));
        fill(clients, ...(state.clients ?? []).map(c =>
          h('li', { text: `${c.node_id} ${c.connected ? 'connected' : 'gone'}` })));
        if (!state.clients?.length) {
          clients.append(h('li', { class: 'ai4lab-note', text: ACTIVE.includes(dep.status) ? 'no client yet' : 'none: the server has ended' }));
        }
        stop.hidden = !ACTIVE.includes(dep.status);
        const option = this.servers.querySelector<HTMLOptionElement>(`option[value='${id}']`);
        if (option && !option.text.endsWith(dep.status)) {
          option.text = `${dep.spec?.title || dep.name || dep.id} — ${dep.status}`;
        }
        if (!ACTIVE.includes(dep.status)) {
          this.stopPoll?.();
        }
      } catch (e) {
        showError(errors, e);
      }
    };
    void poll();
    this.stopPoll = this.every(2000, () => void poll());
  }

  renderState(head: HTMLElement, dep: Deployment, state: FlowerState): void {
    const total = state.rounds_total ? ` of ${state.rounds_total}` : '';
    fill(head, h('h3', {}, `${dep.spec?.title || dep.id} `, badge(dep.status)),
      h('p', {}, 'Clients connect to ', state.address ? h('code', { id: 'ai4lab-fl-address', text: state.address }) : 'the address shown once it runs',
        state.tls ? ' (HTTPS, pin the certificate in the snippet)' : ''),
      h('p', { id: 'ai4lab-fl-state', text: `${state.state ?? dep.status}: ${state.rounds?.length ?? 0}${total} round(s) done` +
        (typeof state.result === 'number' ? `, ${state.metric ?? 'result'} = ${state.result.toFixed(3)}` : '') }),
      state.error ? h('div', { class: 'ai4lab-error', role: 'alert', text: state.error }) : null,
      state.mlflow_run ? h('a', { href: state.mlflow_run, target: '_blank', rel: 'noopener', text: 'MLflow run' }) : null,
      state.model ? h('p', { text: `Model: ${state.model}` }) : null);
  }
}
