import { describe, expect, it } from 'vitest';

import { badge } from '../src/dom';
import { datasetChoices, predictionText } from '../src/panels/deploy';
import { flowerConfig, roundSeries, roundText } from '../src/panels/flower';
import { humanSize, joinPath, ownStorageBody, parentOf, usageText, whereText } from '../src/panels/storage';

const form = {
  rounds: '5', strategy: 'FedProx', proximal_mu: '0.1', server_learning_rate: '1', min_fit_clients: '2',
  min_available_clients: '2', local_epochs: '1', metric: 'accuracy', dp: false, clipping_norm: '1', noise_multiplier: '0.1'
};

describe('flowerConfig', () => {
  it('builds the FLOWER-API config', () => {
    expect(flowerConfig(form)).toEqual({
      problems: [],
      config: {
        rounds: 5, strategy: 'FedProx', strategy_params: { proximal_mu: 0.1 }, min_fit_clients: 2,
        min_available_clients: 2, local_epochs: 1, metric: 'accuracy', dp: null, secure_aggregation: false
      }
    });
    expect(flowerConfig({ ...form, dp: true }).config.dp).toEqual({ clipping_norm: 1, noise_multiplier: 0.1 });
    // only the parameters of the chosen strategy are sent (the platform refuses the others)
    expect(flowerConfig({ ...form, strategy: 'FedAvg', proximal_mu: 'x' })).toMatchObject({ problems: [], config: { strategy_params: {} } });
    expect(flowerConfig({ ...form, strategy: 'FedAdam' }).config.strategy_params).toEqual({ server_learning_rate: 1 });
  });
  it('explains bad values', () => {
    expect(flowerConfig({ ...form, rounds: '0', strategy: 'Magic' }).problems).toEqual([
      'Rounds: must be between 1 and 1000', 'Strategy: choose one of FedAvg, FedMedian, FedProx, FedAvgM, FedOpt, FedAdam, FedYogi']);
    expect(flowerConfig({ ...form, min_fit_clients: '3' }).problems).toEqual(['Minimum clients per round cannot exceed the minimum connected']);
    expect(flowerConfig({ ...form, min_fit_clients: '1' }).problems).toEqual(['Minimum clients per round: must be between 2 and 1000']);
  });
});

describe('roundSeries', () => {
  it('makes one series per metric plus loss', () => {
    const s = roundSeries({ rounds: [{ round: 1, metrics: { accuracy: 0.5 }, loss: 1.2 }, { round: 2, metrics: { accuracy: 0.8 }, loss: null }] });
    expect(s).toEqual({ accuracy: [{ step: 1, value: 0.5 }, { step: 2, value: 0.8 }], loss: [{ step: 1, value: 1.2 }] });
  });
});

describe('roundText', () => {
  it('says what a round gave', () => {
    expect(roundText({ round: 2, metrics: { accuracy: 0.91234 }, loss: 0.3, clients: 2 })).toBe('Round 2: accuracy 0.912, loss 0.300, 2 clients');
    expect(roundText({ round: 1, metrics: {} })).toBe('Round 1: no metrics');
  });
});

describe('predictionText', () => {
  it('reads labels and lists', () => {
    expect(predictionText({ status: 'OK', predictions: { label: 7, probabilities: [] } })).toBe('Predicted label: 7');
    expect(predictionText({ predictions: [151.23456, 80] })).toBe('Predictions: 151.235, 80');
  });
});

describe('storage usage', () => {
  it('says what is used of the quota', () => {
    expect(humanSize(999)).toBe('999 B');
    expect(humanSize(1500000)).toBe('1.5 MB');
    expect(usageText({ used_bytes: 2500000000, allowed_bytes: 5000000000 })).toBe('Used 2.5 GB of 5.0 GB (50%)');
    expect(usageText({ used_bytes: 0, allowed_bytes: 0 })).toBe('Used 0 B of 0 B');
    expect(usageText({ used_bytes: null, allowed_bytes: null })).toBe('My own storage: its server keeps count.');
  });
});

describe('own storage', () => {
  const form = { type: 's3', url: ' s3://mine ', endpoint_url: 'https://minio.example.org', vendor: 'other', username: 'KEY', password: 'S' };
  it('builds the connect body', () => {
    expect(ownStorageBody(form)).toEqual({
      problems: [], body: { type: 's3', url: 's3://mine', endpoint_url: 'https://minio.example.org', username: 'KEY', password: 'S' }
    });
    expect(ownStorageBody({ ...form, type: 'webdav', url: 'https://nc.example.org/remote.php/dav/files/me', vendor: 'nextcloud' }).body)
      .toEqual({ type: 'webdav', url: 'https://nc.example.org/remote.php/dav/files/me', username: 'KEY', password: 'S', vendor: 'nextcloud' });
  });
  it('says what to fix', () => {
    expect(ownStorageBody({ ...form, url: 'mine', password: '' }).problems).toEqual([
      'URL: an S3 storage is s3://BUCKET[/PREFIX]', 'Secret key: give it']);
    expect(ownStorageBody({ ...form, type: 'webdav', url: 'nc.example.org' }).problems).toEqual([
      'URL: a WebDAV storage is https://HOST/PATH (Nextcloud: …/remote.php/dav/files/USER)']);
  });
  it('says where my storage is', () => {
    expect(whereText({ source: 'platform', type: 'local', url: '', endpoint_url: '', username: '' })).toBe("The platform's storage.");
    expect(whereText({ source: 'own', type: 'webdav', url: 'https://nc/x', endpoint_url: '', username: 'me' }))
      .toBe('My own webdav storage at https://nc/x, as me.');
  });
});

describe('storage paths', () => {
  it('joins and climbs', () => {
    expect(joinPath('datasets/', '/digits', 'a.png')).toBe('datasets/digits/a.png');
    expect(parentOf('datasets/digits')).toBe('datasets');
    expect(parentOf('datasets')).toBe('');
  });
});

describe('badge', () => {
  it('colours by status', () => {
    expect(badge('succeeded').className).toContain('ai4lab-badge-ok');
    expect(badge('failed').className).toContain('ai4lab-badge-bad');
    expect(badge('queued').className).toContain('ai4lab-badge-busy');
    expect(badge('stopped').className).toContain('ai4lab-badge-idle');
  });
});

describe('datasetChoices', () => {
  it('offers each dataset folder, labelled with its source, then its data files', () => {
    const choices = datasetChoices([
      { name: 'digits', path: 'datasets/digits', files: 1, bytes: 10, data_files: ['digits.csv'],
        card: { title: 'Handwritten digits', doi: '10.5281/zenodo.7' } },
      { name: 'mine', path: 'datasets/mine', files: 2, bytes: 3, card: null }
    ]);
    expect(choices).toEqual([
      { value: 'datasets/digits', label: 'Handwritten digits (1 file, doi:10.5281/zenodo.7)' },
      { value: 'datasets/digits/digits.csv', label: 'digits.csv in digits' },
      { value: 'datasets/mine', label: 'mine (2 files, uploaded)' }
    ]);
  });
});
