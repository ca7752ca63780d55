import { describe, expect, it } from 'vitest';

import { DeployConfig, PredictField } from '../src/api';
import { argsForm, checkNumber, deployForm, predictForm } from '../src/forms';

const config: DeployConfig = {
  item: { id: 'ai4lab-digits', kind: 'module', title: 'Digits' },
  purpose: 'inference',
  deployable: true,
  problems: [],
  general: {
    title: { name: 'Deployment title', value: '' },
    backend: { name: 'Where to run', value: 'local', options: ['local'] }
  },
  hardware: {
    cpu_num: { name: 'Number of CPUs', value: 1, range: [1, 4] },
    ram: { name: 'RAM memory (in MB)', value: 1000, range: [1000, 16000] },
    gpu_type: { name: 'GPU model', value: '', options: ['', 'Tesla T4'] }
  }
};

function set(root: HTMLElement, id: string, value: string): void {
  (root.querySelector(`#${id}`) as HTMLInputElement).value = value;
}

describe('checkNumber', () => {
  it('explains each kind of mistake', () => {
    expect(checkNumber('epochs', '', [1, 10], true)).toBe('epochs: give a value');
    expect(checkNumber('epochs', 'many', [1, 10], true)).toBe('epochs: "many" is not a number');
    expect(checkNumber('epochs', '2.5', [1, 10], true)).toBe('epochs: must be a whole number');
    expect(checkNumber('epochs', '0', [1, 10], true)).toBe('epochs: must be between 1 and 10');
    expect(checkNumber('epochs', '3', [1, 10], true)).toBeNull();
  });
});

describe('deployForm', () => {
  it('reads the resources within their ranges', () => {
    const form = deployForm(config);
    set(form.element, 'ai4lab-deploy-title', ' my digits ');
    set(form.element, 'ai4lab-deploy-ram', '2000');
    expect(form.read()).toEqual({ values: { title: 'my digits', backend: 'local', hardware: { cpu_num: 1, ram: 2000 } }, problems: [] });
  });
  it('offers only the platform backends and refuses out-of-range values', () => {
    const form = deployForm(config);
    const options = Array.from(form.element.querySelectorAll<HTMLOptionElement>('#ai4lab-deploy-backend option'));
    expect(options.map(o => [o.value, o.disabled])).toEqual([['local', false], ['nomad', true], ['oscar', true]]);
    set(form.element, 'ai4lab-deploy-cpu_num', '9');
    expect(form.read().problems).toEqual(['Number of CPUs: must be between 1 and 4']);
  });
  it('carries the reasons an item cannot be deployed', () => {
    const form = deployForm({ ...config, deployable: false, problems: ['needs 2 GPU(s), this platform has none'] });
    expect(form.read().problems).toEqual(['needs 2 GPU(s), this platform has none']);
  });
});

describe('argsForm', () => {
  const args = {
    dataset: { type: 'String', required: true },
    epochs: { type: 'Integer', default: 30, range: [1, 1000] as [number, number] },
    learning_rate: { type: 'Float', default: 0.01, range: [1e-6, 1] as [number, number] },
    solver: { type: 'String', choices: ['adam', 'sgd'], default: 'adam' },
    note: { type: 'String', required: true }
  };
  it('leaves out the dataset and types the values', () => {
    const form = argsForm(args);
    expect(form.element.querySelector('#ai4lab-arg-dataset')).toBeNull();
    set(form.element, 'ai4lab-arg-epochs', '5');
    set(form.element, 'ai4lab-arg-note', 'hi');
    expect(form.read()).toEqual({ values: { epochs: 5, learning_rate: 0.01, solver: 'adam', note: 'hi' }, problems: [] });
  });
  it('lists every problem at once', () => {
    const form = argsForm(args);
    set(form.element, 'ai4lab-arg-epochs', '0');
    set(form.element, 'ai4lab-arg-learning_rate', '2');
    expect(form.read().problems).toEqual(['epochs: must be between 1 and 1000', 'learning_rate: must be between 0.000001 and 1', 'note: give a value']);
  });
});

describe('predictForm', () => {
  const fields: PredictField[] = [
    { name: 'text', file: false, required: false, type: 'String', default: 'hello' },
    { name: 'choice', file: false, required: false, type: 'String', default: 'b', choices: ['a', 'b'] },
    { name: 'count', file: false, required: false, type: 'Integer', default: 3, range: [1, 10] },
    { name: 'flag', file: false, required: false, type: 'Boolean', default: false },
    { name: 'values', file: false, required: false, type: 'List', default: [1, 2], many: true },
    { name: 'image', file: true, required: true, type: 'Field' },
    { name: 'accept', file: false, required: false, type: 'String', choices: ['application/json', 'image/png'] }
  ];

  it('makes one input per kind and an Answer-as choice', () => {
    const form = predictForm(fields);
    const el = form.element;
    expect(el.querySelector('#ai4lab-try-choice')!.tagName).toBe('SELECT');
    expect((el.querySelector('#ai4lab-try-count') as HTMLInputElement).type).toBe('number');
    expect((el.querySelector('#ai4lab-try-flag') as HTMLInputElement).type).toBe('checkbox');
    expect((el.querySelector('#ai4lab-try-values') as HTMLInputElement).value).toBe('1, 2');
    expect((el.querySelector('#ai4lab-try-image') as HTMLInputElement).type).toBe('file');
    expect([...el.querySelectorAll('#ai4lab-try-accept option')].map(o => (o as HTMLOptionElement).value))
      .toEqual(['application/json', 'image/png']);
    expect(form.read().problems).toEqual(['image: give a file']);
  });

  it('sends lists as repeated fields, booleans as words, and the answer type apart', () => {
    const form = predictForm(fields.filter(f => f.name !== 'image'));
    const el = form.element;
    (el.querySelector('#ai4lab-try-values') as HTMLInputElement).value = '3.5, 4,';
    (el.querySelector('#ai4lab-try-flag') as HTMLInputElement).checked = true;
    (el.querySelector('#ai4lab-try-accept') as HTMLSelectElement).value = 'image/png';
    const { values, problems } = form.read();
    expect(problems).toEqual([]);
    expect(values.form.getAll('values')).toEqual(['3.5', '4']);
    expect(values.form.get('flag')).toBe('true');
    expect(values.form.get('choice')).toBe('b');
    expect(values.form.has('accept')).toBe(false);
    expect(values.accept).toBe('image/png');
  });

  it('checks numbers against their range', () => {
    const form = predictForm(fields.filter(f => f.name === 'count'));
    (form.element.querySelector('#ai4lab-try-count') as HTMLInputElement).value = '11';
    expect(form.read().problems).toEqual(['count: must be between 1 and 10']);
  });
});
