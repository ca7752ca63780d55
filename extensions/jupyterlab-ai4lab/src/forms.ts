/**
 * Forms generated from what the platform says: the deploy form of an item
 * (`/catalog/{kind}/{id}/config`, ai4-papi's user.yaml shape) and a module's
 * training arguments (`/catalog/modules/{id}/train-args`). Values are checked
 * here too, so that a mistake is explained before anything is sent.
 */

import { ArgSpec, DeployConfig, FieldSpec } from './api';
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
