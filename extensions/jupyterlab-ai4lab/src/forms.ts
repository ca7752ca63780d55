/**
 * Forms generated from what the platform says: the deploy form of an item
 * (`/catalog/{kind}/{id}/config`, ai4-papi's user.yaml shape) and a module's
 * training arguments (`/catalog/modules/{id}/train-args`). Values are checked
 * here too, so that a mistake is explained before anything is sent.
 */

import { ArgSpec, DeployConfig, FieldSpec, PredictField } from './api';
import { h } from './dom';

export const BACKENDS = ['local', 'nomad', 'oscar'];

export interface Form<T> {
  element: HTMLElement;
  /** The values, or the reasons they cannot be sent. */
  read(): { values: T; problems: string[] };
}

function numberInput(id: string, spec: { value?: any; range?: [number, number] }, step: string): HTMLInputElement {
  return h('input', {
    id,
    type: 'number',
    step,
    min: spec.range?.[0],
    max: spec.range?.[1],
    value: spec.value ?? ''
  });
}

function row(label: string, input: HTMLElement, help?: string): HTMLElement {
  return h('label', { class: 'ai4lab-field' }, h('span', { class: 'ai4lab-field-name', text: label }), input,
    help ? h('small', { text: help }) : null);
}

/** Check one number against an optional range; returns a problem or null. */
export function checkNumber(label: string, raw: string, range?: [number, number], integer = false): string | null {
  if (raw.trim() === '') {
    return `${label}: give a value`;
  }
  const v = Number(raw);
  if (!Number.isFinite(v)) {
    return `${label}: ${JSON.stringify(raw)} is not a number`;
  }
  if (integer && !Number.isInteger(v)) {
    return `${label}: must be a whole number`;
  }
  if (range && (v < range[0] || v > range[1])) {
    return `${label}: must be between ${range[0]} and ${range[1]}`;
  }
  return null;
}

export interface DeployValues {
  title: string;
  backend: string;
  hardware: Record<string, number | string>;
}

/** The deploy form: title, where to run (only the platform's backends enabled), resources. */
export function deployForm(config: DeployConfig, idPrefix = 'ai4lab-deploy'): Form<DeployValues> {
  const title = h('input', { id: `${idPrefix}-title`, type: 'text', maxlength: 45, value: config.general?.title?.value ?? '' });
  const offered: string[] = config.general?.backend?.options ?? ['local'];
  const backend = h('select', { id: `${idPrefix}-backend` },
    BACKENDS.map(b => h('option', { value: b, disabled: !offered.includes(b), text: offered.includes(b) ? b : `${b} (not configured here)` })));
  backend.value = config.general?.backend?.value ?? offered[0];
  const inputs: Record<string, { spec: FieldSpec; input: HTMLInputElement | HTMLSelectElement }> = {};
  const rows: HTMLElement[] = [];
  for (const [key, spec] of Object.entries(config.hardware ?? {})) {
    let input: HTMLInputElement | HTMLSelectElement;
    if (spec.range) {
      input = numberInput(`${idPrefix}-${key}`, spec, key === 'cpu_num' ? '0.5' : '1');
    } else if (spec.options) {
      input = h('select', { id: `${idPrefix}-${key}` }, spec.options.map(o => h('option', { value: o, text: o === '' ? 'any' : o })));
      input.value = spec.value ?? '';
    } else {
      continue;
    }
    inputs[key] = { spec, input };
    const hint = spec.range ? `${spec.range[0]} – ${spec.range[1]}` : spec.description;
    rows.push(row(spec.name, input, hint));
  }
  const element = h('fieldset', { class: 'ai4lab-form' },
    h('legend', { text: config.purpose === 'training' ? 'Training resources' : 'Deployment' }),
    row('Title', title), row('Where to run', backend, config.general?.backend?.description), ...rows);
  return {
    element,
    read() {
      const problems: string[] = [...(config.deployable ? [] : config.problems)];
      const hardware: Record<string, number | string> = {};
      for (const [key, { spec, input }] of Object.entries(inputs)) {
        if (spec.range) {
          const p = checkNumber(spec.name, input.value, spec.range, key !== 'cpu_num');
          if (p) {
            problems.push(p);
          } else {
            hardware[key] = Number(input.value);
          }
        } else if (input.value !== '') {
          hardware[key] = input.value;
        }
      }
      if (!offered.includes(backend.value)) {
        problems.push(`Where to run: ${backend.value} is not configured on this platform`);
      }
      return { values: { title: title.value.trim(), backend: backend.value, hardware }, problems };
    }
  };
}

/** Arguments the platform fills itself for a training: the dataset, where outputs go, the start weights. */
export const PLATFORM_ARGS = ['dataset', 'output_dir', 'init_weights'];

/** A module's training arguments as inputs (types, ranges, choices, defaults). */
export function argsForm(args: Record<string, ArgSpec>, skip: string[] = PLATFORM_ARGS, idPrefix = 'ai4lab-arg'): Form<Record<string, any>> {
  const inputs: Record<string, { spec: ArgSpec; input: HTMLInputElement | HTMLSelectElement }> = {};
  const rows: HTMLElement[] = [];
  for (const [name, spec] of Object.entries(args)) {
    if (skip.includes(name)) {
      continue;
    }
    let input: HTMLInputElement | HTMLSelectElement;
    if (spec.choices) {
      input = h('select', { id: `${idPrefix}-${name}` }, spec.choices.map(c => h('option', { value: String(c), text: String(c) })));
      input.value = spec.default !== undefined ? String(spec.default) : String(spec.choices[0]);
    } else if (spec.type === 'Integer' || spec.type === 'Int' || spec.type === 'Float' || spec.type === 'Number') {
      input = numberInput(`${idPrefix}-${name}`, { value: spec.default, range: spec.range }, spec.type.startsWith('Int') ? '1' : 'any');
    } else if (spec.type === 'Boolean' || spec.type === 'Bool') {
      input = h('input', { id: `${idPrefix}-${name}`, type: 'checkbox', checked: spec.default === true });
    } else {
      input = h('input', { id: `${idPrefix}-${name}`, type: 'text', value: spec.default ?? '' });
    }
    inputs[name] = { spec, input };
    rows.push(row(name + (spec.required ? ' *' : ''), input, spec.description));
  }
  const element = h('fieldset', { class: 'ai4lab-form' }, h('legend', { text: 'Training arguments' }), ...rows);
  return {
    element,
    read() {
      const values: Record<string, any> = {};
      const problems: string[] = [];
      for (const [name, { spec, input }] of Object.entries(inputs)) {
        const raw = input.value;
        if (input instanceof HTMLInputElement && input.type === 'checkbox') {
          values[name] = input.checked;
        } else if (input instanceof HTMLInputElement && input.type === 'number') {
          if (raw === '' && !spec.required) {
            continue;
          }
          const p = checkNumber(name, raw, spec.range, spec.type.startsWith('Int'));
          if (p) {
            problems.push(p);
          } else {
            values[name] = Number(raw);
          }
        } else if (raw === '' && spec.required) {
          problems.push(`${name}: give a value`);
        } else if (raw !== '') {
          values[name] = raw;
        }
      }
      return { values, problems };
    }
  };
}

/** What the try-it box sends: the form, and the content type asked for the answer ('' for JSON). */
export interface PredictRequest {
  form: FormData;
  accept: string;
}

const NUMBER_TYPES = ['Integer', 'Int', 'Float', 'Number', 'Decimal'];

/**
 * A module's predict arguments as inputs, by their DEEPaaS kind: files (several when the argument is a
 * list of files), choices, booleans, numbers with ranges, lists (comma-separated, sent as the repeated
 * field DEEPaaS reads) and text. The ``accept`` argument becomes an "Answer as" choice.
 */
export function predictForm(fields: PredictField[], idPrefix = 'ai4lab-try'): Form<PredictRequest> {
  const inputs: { field: PredictField; input: HTMLInputElement | HTMLSelectElement }[] = [];
  let accept: HTMLSelectElement | null = null;
  const rows: HTMLElement[] = [];
  for (const f of fields) {
    const id = `${idPrefix}-${f.name}`;
    let input: HTMLInputElement | HTMLSelectElement;
    if (f.name === 'accept' && f.choices?.length) {
      accept = h('select', { id }, f.choices.map(c => h('option', { value: String(c), text: String(c) })));
      rows.push(row('Answer as', accept, 'the content type of the answer'));
      continue;
    }
    if (f.file) {
      input = h('input', { id, type: 'file', multiple: !!f.many, 'data-field': f.name });
    } else if (f.choices?.length) {
      const options = f.required || f.default !== null && f.default !== undefined ? f.choices : ['', ...f.choices];
      input = h('select', { id, 'data-field': f.name }, options.map(c => h('option', { value: String(c), text: String(c) })));
      input.value = f.default !== null && f.default !== undefined ? String(f.default) : String(options[0]);
    } else if (f.type === 'Boolean' || f.type === 'Bool') {
      input = h('input', { id, type: 'checkbox', checked: f.default === true, 'data-field': f.name });
    } else if (!f.many && NUMBER_TYPES.includes(f.type ?? '')) {
      input = numberInput(id, { value: f.default ?? undefined, range: rangeOf(f) }, f.type?.startsWith('Int') ? '1' : 'any');
      input.dataset.field = f.name;
    } else {
      const value = Array.isArray(f.default) ? f.default.join(', ') : f.default ?? '';
      input = h('input', { id, type: 'text', value, 'data-field': f.name, placeholder: f.many ? 'a, b, c' : '' });
    }
    inputs.push({ field: f, input });
    rows.push(row(f.name + (f.required ? ' *' : ''), input, [f.many && !f.file ? 'several values, comma-separated' : '',
      (f.description ?? '').slice(0, 120)].filter(Boolean).join(' — ')));
  }
  return {
    element: h('div', { class: 'ai4lab-try-inputs' }, ...rows),
    read() {
      const form = new FormData();
      const problems: string[] = [];
      for (const { field, input } of inputs) {
        if (input instanceof HTMLInputElement && input.type === 'file') {
          Array.from(input.files ?? []).slice(0, field.many ? undefined : 1).forEach(file => form.append(field.name, file, file.name));
        } else if (input instanceof HTMLInputElement && input.type === 'checkbox') {
          form.append(field.name, input.checked ? 'true' : 'false');
        } else if (input instanceof HTMLInputElement && input.type === 'number') {
          if (input.value === '') {
            continue;
          }
          const p = checkNumber(field.name, input.value, rangeOf(field), field.type?.startsWith('Int'));
          if (p) {
            problems.push(p);
          } else {
            form.append(field.name, input.value);
          }
        } else if (field.many) {
          input.value.split(',').map(v => v.trim()).filter(Boolean).forEach(v => form.append(field.name, v));
        } else if (input.value !== '') {
          form.append(field.name, input.value);
        }
        if (field.required && !form.has(field.name)) {
          problems.push(`${field.name}: give ${field.file ? 'a file' : 'a value'}`);
        }
      }
      const asked = accept?.value ?? '';
      return { values: { form, accept: asked === 'application/json' || asked === '*/*' ? '' : asked }, problems };
    }
  };
}

function rangeOf(f: PredictField): [number, number] | undefined {
  if (!f.range) {
    return undefined;
  }
  return [f.range[0] ?? -Infinity, f.range[1] ?? Infinity];
}
