/**
 * Deploy / inference: the deploy or training form generated from the item's deploy
 * config, and a try-it box that uploads a file and shows the prediction — through a
 * running deployment of the item, or once without one.
 */

import { DatasetEntry, Deployment, PredictField } from '../api';
import { ACTIVE, answerView, badge, busy, fill, h, showError, warningsOf } from '../dom';
import { argsForm, deployForm, Form, predictForm, PredictRequest } from '../forms';
import { Ctx, Panel } from './base';
import { secretsChoice } from './secrets';

type Purpose = 'inference' | 'training';

export function predictionText(result: any): string {
  const p = result?.predictions ?? result;
  if (p && typeof p === 'object' && 'label' in p) {
    return `Predicted label: ${p.label}`;
  }
  if (Array.isArray(p)) {
    return `Predictions: ${p.map(v => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : JSON.stringify(v))).join(', ')}`;
  }
  return 'Prediction:';
}

/**
 * What the training form's dataset picker offers: each dataset folder (labelled with where it came
 * from), then each of its data files, for modules that train on one file (a CSV).
 */
export function datasetChoices(list: DatasetEntry[]): { value: string; label: string }[] {
  const out: { value: string; label: string }[] = [];
  for (const d of list) {
    const from = d.card?.doi ? `doi:${d.card.doi}` : d.card?.source ?? 'uploaded';
    out.push({ value: d.path, label: `${d.card?.title ?? d.name} (${d.files} file${d.files === 1 ? '' : 's'}, ${from})` });
    for (const f of d.data_files ?? []) {
      out.push({ value: `${d.path}/${f}`, label: `${f} in ${d.name}` });
    }
  }
  return out;
}

export class DeployPanel extends Panel {
  private item = h('input', { id: 'ai4lab-deploy-item', type: 'text', placeholder: 'module id, e.g. ai4lab-digits', value: 'ai4lab-digits' });
  private purpose = h('select', { id: 'ai4lab-deploy-purpose' },
    h('option', { value: 'inference', text: 'Deploy for inference' }), h('option', { value: 'training', text: 'Train' }));
  private loadButton = h('button', { id: 'ai4lab-deploy-load', class: 'jp-mod-styled', text: 'Load form' });
  private formArea = h('div', { class: 'ai4lab-form-area' });
  private status = h('div', { id: 'ai4lab-deploy-status', class: 'ai4lab-status' });
  private errors = h('div', { id: 'ai4lab-deploy-errors', class: 'ai4lab-errors' });
  private datasetInput = h('input', { id: 'ai4lab-train-dataset', type: 'text', list: 'ai4lab-train-datasets',
    placeholder: 'folder in your storage, e.g. datasets/digits' });
  /** The dataset picker: the user's datasets (`GET /datasets`), offered as the input's suggestions. */
  private datasetList = h('datalist', { id: 'ai4lab-train-datasets' });
  // try-it box
  private target = h('select', { id: 'ai4lab-try-target' });
  private tryInputs = h('div', { class: 'ai4lab-try-inputs' });
  private tryForm: Form<PredictRequest> | null = null;
  /** Loads in flight: only the latest one's answer is shown (an environment build can make an earlier one slow). */
  private loadSeq = 0;
  private trySeq = 0;
  private tryButton = h('button', { id: 'ai4lab-try-button', class: 'jp-mod-styled jp-mod-accept', text: 'Predict' });
  private tryResult = h('div', { id: 'ai4lab-try-result' });
  private tryErrors = h('div', { class: 'ai4lab-errors' });
  private fields: PredictField[] = [];
  private stopWatch: (() => void) | null = null;

  constructor(ctx: Ctx) {
    super(ctx, 'deploy', 'Deploy & try');
    this.loadButton.addEventListener('click', () => void this.load());
    this.tryButton.addEventListener('click', () => void this.predict());
    this.node.append(
      h('h2', { text: 'Deploy / inference' }),
      h('div', { class: 'ai4lab-toolbar' }, this.item, this.purpose, this.loadButton),
      this.errors, this.formArea, this.status,
      h('section', { id: 'ai4lab-try', class: 'ai4lab-try' },
        h('h3', { text: 'Try it' }),
        h('label', { class: 'ai4lab-field' }, h('span', { class: 'ai4lab-field-name', text: 'Predict with' }), this.target),
        this.tryInputs, this.tryButton, this.tryErrors, this.tryResult));
  }

  present(args?: Record<string, any>): void {
    if (args?.item) {
      this.item.value = args.item;
    }
    if (args?.dataset) {
      this.datasetInput.value = args.dataset;
      this.purpose.value = 'training';
    }
    if (args?.purpose === 'inference' || args?.purpose === 'training') {
      this.purpose.value = args.purpose;
    }
    if (args?.watch) {
      this.purpose.value = 'inference';
      fill(this.formArea);
      this.watch(args.watch as Deployment);
      return;
    }
    if (args?.item || args?.dataset || !this.formArea.hasChildNodes()) {
      void this.load(args?.purpose === 'try');
    }
  }

  async load(tryOnly = false): Promise<void> {
    const id = this.item.value.trim();
    if (!id) {
      showError(this.errors, new Error('Say which module: its catalog id, e.g. ai4lab-digits'));
      return;
    }
    const purpose = this.purpose.value as Purpose;
    const seq = ++this.loadSeq;
    await busy(this.loadButton, this.errors, async () => {
      const [config, trainArgs, mySecrets, datasets] = await Promise.all([
        this.ctx.api.deployConfig('modules', id, purpose),
        purpose === 'training' ? this.ctx.api.trainArgs(id) : Promise.resolve(null),
        this.ctx.api.secrets().catch(() => []), // a platform without secrets still deploys
        // the picker is a help, not a condition: a failing list leaves the field to be typed in
        purpose === 'training' ? this.ctx.api.datasets().catch(() => [] as DatasetEntry[]) : Promise.resolve([])
      ]);
      if (seq !== this.loadSeq) {
        return; // another item was loaded meanwhile: its form wins
      }
      const form = deployForm(config);
      const args = trainArgs ? argsForm(trainArgs) : null;
      const secrets = secretsChoice(mySecrets);
      fill(this.datasetList, ...datasetChoices(datasets).map(c => h('option', { value: c.value, label: c.label })));
      const submit = h('button', { id: 'ai4lab-deploy-submit', class: 'jp-mod-styled jp-mod-accept',
        text: purpose === 'training' ? 'Start training' : 'Deploy' });
      submit.addEventListener('click', () => void this.submit(submit, id, purpose, form, args, secrets?.read() ?? {}));
      const problems = config.deployable ? null : h('div', { class: 'ai4lab-error', role: 'alert', text: `Cannot run here: ${config.problems.join('; ')}` });
      fill(this.formArea,
        h('h3', { text: config.item.title }), problems, warningsOf(config.warnings),
        purpose === 'training' ? h('label', { class: 'ai4lab-field' }, h('span', { class: 'ai4lab-field-name', text: 'Dataset *' }), this.datasetInput,
          this.datasetList,
          h('small', { text: 'Pick one of your datasets (ai4lab datasets import <doi>), or in the Storage panel with “Use as training input”.' })) : null,
        args?.element, form.element, secrets?.element, submit);
    });
    await this.loadTry(id);
    if (tryOnly) {
      this.tryInputs.querySelector('input')?.scrollIntoView();
    }
  }

  async submit(button: HTMLButtonElement, id: string, purpose: Purpose, form: Form<any>, args: Form<any> | null,
    secrets: Record<string, unknown> = {}): Promise<void> {
    const { values, problems } = form.read();
    const a = args?.read() ?? { values: {}, problems: [] };
    const all = [...problems, ...a.problems];
    if (purpose === 'training' && !this.datasetInput.value.trim()) {
      all.unshift('Dataset: give a folder or file of your storage');
    }
    if (all.length) {
      showError(this.errors, new Error(all.join('; ')));
      return;
    }
    const body: Record<string, any> = { kind: purpose === 'training' ? 'training' : 'module', item: id, title: values.title,
      hardware: values.hardware, ...secrets };
    if (purpose === 'training') {
      body.dataset = this.datasetInput.value.trim();
      body.args = a.values;
    }
    const dep = await busy(button, this.errors, () => this.ctx.api.create(body));
    if (!dep) {
      return;
    }
    if (purpose === 'training') {
      fill(this.status, h('span', { text: `Training ${dep.id} ` }), badge(dep.status), warningsOf(dep.warnings));
      this.ctx.open('deployments', { select: dep.id });
      return;
    }
    this.watch(dep);
  }

  /** Follow a new module deployment until it runs, then offer it in the try-it box. */
  watch(dep: Deployment): void {
    this.stopWatch?.();
    const render = (d: Deployment) =>
      fill(this.status, h('span', { text: `Deployment ${d.id} ` }), badge(d.status),
        d.status_reason ? h('small', { text: ` ${d.status_reason.split('\n')[0]}` }) : null, warningsOf(d.warnings));
    render(dep);
    this.stopWatch = this.every(1000, async () => {
      try {
        const d = await this.ctx.api.deployment(dep.id);
        render(d);
        if (!ACTIVE.includes(d.status) || d.status === 'running') {
          this.stopWatch?.();
          await this.loadTry(this.item.value.trim(), d.id);
        }
      } catch (e) {
        this.stopWatch?.();
        showError(this.status, e);
      }
    });
  }

  /** The try-it box for an item: its predict fields and the deployments that can answer. */
  async loadTry(id: string, select?: string): Promise<void> {
    fill(this.tryErrors);
    const seq = ++this.trySeq;
    try {
      const [fields, deps] = await Promise.all([this.ctx.api.predictArgs(id), this.ctx.api.deployments('module')]);
      if (seq !== this.trySeq) {
        return; // a slower answer for an item loaded before: the newer item's box stays
      }
      this.fields = fields.filter(f => f.name !== 'weights');
      const running = deps.filter(d => d.spec?.item === id && d.status === 'running');
      fill(this.target, h('option', { value: '', text: 'once, without a deployment' }),
        ...running.map(d => h('option', { value: d.id, text: `deployment ${d.name || d.id} (${d.id})` })));
      if (select && running.some(d => d.id === select)) {
        this.target.value = select;
      }
      this.tryForm = predictForm(this.fields);
      fill(this.tryInputs, this.tryForm.element);
    } catch (e) {
      if (seq === this.trySeq) {
        showError(this.tryErrors, e);
      }
    }
  }

  async predict(): Promise<void> {
    const id = this.item.value.trim();
    if (!this.tryForm) {
      return;
    }
    const { values, problems } = this.tryForm.read();
    if (problems.length) {
      showError(this.tryErrors, new Error(problems.join('; ')));
      return;
    }
    fill(this.tryResult, h('p', { text: 'Predicting…' }));
    const answer = await busy(this.tryButton, this.tryErrors, () => this.target.value
      ? this.ctx.api.predictAnswer(this.target.value, values.form, values.accept)
      : this.ctx.api.tryModule(id, values.form, values.accept));
    if (answer === undefined) {
      fill(this.tryResult);
      return;
    }
    if ('blob' in answer) {
      fill(this.tryResult, answerView(answer.blob, answer.type));
    } else {
      const result = answer.json;
      fill(this.tryResult, h('p', { id: 'ai4lab-try-label', class: 'ai4lab-prediction', text: predictionText(result) }),
        h('pre', { id: 'ai4lab-try-json', text: JSON.stringify(result.predictions ?? result, null, 2) }));
    }
    this.tryResult.scrollIntoView({ block: 'nearest' });
  }
}

