/**
 * The platform API as the panels see it: every call goes to the server extension
 * (`<base>/ai4lab/api/...`), which adds the session's token. Errors become an
 * `ApiError` whose message is one readable sentence — never HTML or a stack trace.
 */

export type Send = (path: string, init?: RequestInit) => Promise<Response>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** One sentence out of an error answer, whatever its shape (JSON detail, HTML page, text). */
export function errorText(status: number, body: string): string {
  try {
    const data = JSON.parse(body);
    const detail = data?.detail ?? data?.message ?? data?.reason;
    if (typeof detail === 'string' && detail) {
      return detail;
    }
    if (Array.isArray(detail)) {
      return detail
        .map((d: any) => `${(d?.loc ?? []).slice(1).join('.') || 'request'}: ${d?.msg ?? 'invalid'}`)
        .join('; ');
    }
  } catch {
    // not JSON: fall through to the text
  }
  const text = body
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
  if (status === 0) {
    return text || 'the Jupyter server cannot be reached';
  }
  return `the platform answered ${status}${text ? ': ' + text : ''}`;
}

export interface CatalogQuery {
  q?: string;
  task?: string;
  category?: string;
  tag?: string;
  gpu?: '' | 'true' | 'false';
  page?: number;
  per_page?: number;
  facets?: boolean;
}

/** The query string of a catalog search, without empty filters. */
export function catalogQuery(q: CatalogQuery): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(q)) {
    if (value !== undefined && value !== null && value !== '') {
      params.set(key, String(value));
    }
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

export interface CatalogItem {
  id: string;
  kind: string;
  title: string;
  summary: string;
  tags: string[];
  tasks: string[];
  categories: string[];
  gpu_capable: boolean;
  runs_locally: boolean;
  docker_image?: string | null;
  description_html?: string;
  links?: Record<string, string>;
  metadata?: Record<string, any>;
}

export interface CatalogPage {
  items: CatalogItem[];
  total: number;
  pages: number;
  facets?: Record<string, string[]>;
}

export interface Deployment {
  id: string;
  owner: string;
  kind: string;
  name: string;
  status: string;
  status_reason: string;
  spec: Record<string, any>;
  warnings?: string[];
  endpoints: Record<string, any>;
  created_at: string | null;
  finished_at: string | null;
}

export type MetricPoint = { step: number; value: number };

export interface StorageWhere {
  source: 'platform' | 'own';
  type: string;
  url: string;
  endpoint_url: string;
  username: string;
}

export interface StorageUsage {
  used_bytes: number | null;
  allowed_bytes: number | null;
}

export interface StorageEntry {
  name: string;
  path: string;
  type: string;
  size?: number;
}

/** A folder under `datasets/` of the user's storage (`GET /datasets`), with its card when it was imported. */
export interface DatasetEntry {
  name: string;
  path: string;
  files: number;
  bytes: number;
  data_files?: string[];
  card: { title?: string | null; doi?: string | null; source?: string; license?: string | null } | null;
}

/** Typed calls of the platform API, over any `Send` (the server extension in Lab). */
export class Platform {
  constructor(private readonly send: Send) {}

  async call(path: string, init: RequestInit = {}): Promise<Response> {
    let r: Response;
    try {
      r = await this.send(path, init);
    } catch (e) {
      throw new ApiError(0, `the Jupyter server cannot be reached (${(e as Error).message ?? e})`);
    }
    if (!r.ok) {
      throw new ApiError(r.status, errorText(r.status, await r.text()));
    }
    return r;
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const r = await this.call(path, init);
    return (await r.json()) as T;
  }

  private post<T>(path: string, body: unknown, method = 'POST'): Promise<T> {
    return this.json<T>(path, {
      method,
      body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json' }
    });
  }

  catalog(kind: string, q: CatalogQuery): Promise<CatalogPage> {
    return this.json(`api/catalog/${kind}${catalogQuery(q)}`);
  }

  item(kind: string, id: string): Promise<CatalogItem> {
    return this.json(`api/catalog/${kind}/${encodeURIComponent(id)}`);
  }

  deployConfig(kind: string, id: string, purpose: 'inference' | 'training'): Promise<DeployConfig> {
    return this.json(`api/catalog/${kind}/${encodeURIComponent(id)}/config?purpose=${purpose}`);
  }

  predictArgs(id: string): Promise<PredictField[]> {
    return this.json(`api/marketplace/modules/${encodeURIComponent(id)}/predict-args`);
  }

  trainArgs(id: string): Promise<Record<string, ArgSpec>> {
    return this.json(`api/catalog/modules/${encodeURIComponent(id)}/train-args`);
  }

  tryModule(id: string, form: FormData, accept = ''): Promise<Answer> {
    return this.answer(`api/catalog/modules/${encodeURIComponent(id)}/try`, form, accept);
  }

  /** A prediction whose answer may be JSON or a file, as the module's ``accept`` argument chose. */
  async answer(path: string, form: FormData, accept = ''): Promise<Answer> {
    const r = await this.call(path, { method: 'POST', body: form, headers: accept ? { Accept: accept } : {} });
    const type = r.headers.get('content-type') ?? '';
    return type.startsWith('application/json') ? { json: await r.json() } : { blob: await r.blob(), type: type.split(';')[0] };
  }

  publish(body: Record<string, unknown>): Promise<any> {
    return this.post('api/catalog/modules', body);
  }

  openInIde(item: string): Promise<{ folder: string; files: string[] }> {
    return this.post('open-in-ide', { item });
  }

  storageWhere(): Promise<StorageWhere> {
    return this.json('api/me/storage');
  }

  connectStorage(body: Record<string, string>): Promise<StorageWhere> {
    return this.post('api/me/storage', body, 'PUT');
  }

  disconnectStorage(): Promise<StorageWhere> {
    return this.json('api/me/storage', { method: 'DELETE' });
  }

  me(): Promise<{ name: string; role: string; admin: boolean; storage: StorageUsage }> {
    return this.json('api/me');
  }

  deployments(kind?: string): Promise<Deployment[]> {
    return this.json(`api/deployments${kind ? `?kind=${kind}` : ''}`);
  }

  deployment(id: string): Promise<Deployment> {
    return this.json(`api/deployments/${id}`);
  }

  create(body: Record<string, unknown>): Promise<Deployment> {
    return this.post('api/deployments', body);
  }

  stop(id: string): Promise<Deployment> {
    return this.json(`api/deployments/${id}`, { method: 'DELETE' });
  }

  logs(id: string, tail = 200): Promise<string> {
    return this.call(`api/deployments/${id}/logs?tail=${tail}`).then(r => r.text());
  }

  metrics(id: string): Promise<{ run_id: string | null; metrics: Record<string, MetricPoint[]> }> {
    return this.json(`api/deployments/${id}/metrics`);
  }

  predict(id: string, form: FormData): Promise<any> {
    return this.json(`api/deployments/${id}/predict`, { method: 'POST', body: form });
  }

  predictAnswer(id: string, form: FormData, accept = ''): Promise<Answer> {
    return this.answer(`api/deployments/${id}/predict`, form, accept);
  }

  datasets(): Promise<DatasetEntry[]> {
    return this.json('api/datasets');
  }

  importDataset(body: { source: string; name?: string; replace?: boolean }): Promise<Deployment> {
    return this.post('api/datasets', body);
  }

  listStorage(path: string): Promise<{ path: string; content: StorageEntry[] }> {
    return this.json(`api/storage/${encodePath(path)}`);
  }

  download(path: string): Promise<Blob> {
    return this.call(`api/storage/${encodePath(path)}`).then(r => r.blob());
  }

  upload(path: string, data: Blob): Promise<any> {
    return this.json(`api/storage/${encodePath(path)}`, { method: 'PUT', body: data });
  }

  mkdir(path: string): Promise<any> {
    return this.json(`api/storage/${encodePath(path)}`, { method: 'POST' });
  }

  remove(path: string): Promise<any> {
    return this.json(`api/storage/${encodePath(path)}`, { method: 'DELETE' });
  }

  flower(id: string): Promise<FlowerState> {
    return this.json(`api/deployments/${id}/flower`);
  }

  flowerToken(id: string): Promise<{ token: string; snippet: string; certificate?: string | null }> {
    return this.json(`api/deployments/${id}/flower/token`);
  }

  /** My secrets by name; the platform never sends a value back. */
  secrets(): Promise<SecretEntry[]> {
    return this.json('api/secrets');
  }

  /** Store a new secret, or (`replace`) the new value of an existing one. */
  setSecret(name: string, value: string, replace = false): Promise<SecretEntry> {
    return replace
      ? this.post(`api/secrets/${encodeURIComponent(name)}`, { value }, 'PUT')
      : this.post('api/secrets', { name, value });
  }

  deleteSecret(name: string): Promise<{ deleted: string }> {
    return this.json(`api/secrets/${encodeURIComponent(name)}`, { method: 'DELETE' });
  }
}

export interface SecretEntry {
  name: string;
  created_at: string | null;
  updated_at: string | null;
}

export function encodePath(path: string): string {
  return path
    .split('/')
    .filter(Boolean)
    .map(encodeURIComponent)
    .join('/');
}

export interface FieldSpec {
  name: string;
  value: any;
  range?: [number, number];
  options?: any[];
  description?: string;
}

export interface DeployConfig {
  item: { id: string; kind: string; title: string };
  purpose: string;
  deployable: boolean;
  problems: string[];
  /** Resources the metadata recommends that this user cannot have here: the item still runs. */
  warnings?: string[];
  general: Record<string, FieldSpec>;
  hardware: Record<string, FieldSpec>;
  storage?: Record<string, FieldSpec>;
}

export interface ArgSpec {
  type: string;
  required?: boolean;
  default?: any;
  choices?: any[];
  range?: [number, number];
  description?: string;
}

export interface FlowerState {
  address: string | null;
  status: string;
  state?: string;
  tls?: boolean;
  metric?: string;
  rounds_total?: number;
  result?: number | null;
  error?: string | null;
  mlflow_run?: string | null;
  rounds: { round: number; metrics: Record<string, number>; loss?: number | null; clients?: number }[];
  clients: { node_id: string | number; connected: boolean }[];
  mlflow_run_id?: string | null;
  model?: string | null;
}

export interface PredictField {
  name: string;
  file: boolean;
  required: boolean;
  description?: string;
  type?: string;
  default?: any;
  choices?: any[];
  range?: [number | null, number | null];
  /** A list: several values (or files) for one argument. */
  many?: boolean;
}

/** A module's answer: JSON, or bytes of another content type (an image, a zip, a sound). */
export type Answer = { json: any } | { blob: Blob; type: string };
