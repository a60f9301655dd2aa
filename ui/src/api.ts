// The dashboard's API client. Every call names a route of the generated `Api` map
// (api-types.ts, from the admin API's OpenAPI document), so paths, parameters, bodies and
// answers are checked against the API itself. Errors carry the API's code and message.
import type { Api } from './api-types.ts';

export type Route = keyof Api;
type Part<R extends Route, K extends 'params' | 'query' | 'body'> = [Api[R][K]] extends [never] ? { [P in K]?: never } : { [P in K]: Api[R][K] };
export type CallOptions<R extends Route> = Part<R, 'params'> & Partial<Part<R, 'query'>> & Part<R, 'body'>;

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export async function api<R extends Route>(route: R, opts: CallOptions<R>): Promise<{ status: number; data: Api[R]['response'] }> {
  const [method, template] = (route as string).split(' ') as [string, string];
  const params = (opts.params ?? {}) as Record<string, string>;
  let path = template.replace(/\{(\w+)\}/g, (_, k: string) => encodeURIComponent(params[k] ?? ''));
  const query = Object.entries((opts.query ?? {}) as Record<string, string | undefined>).filter(([, v]) => v !== undefined) as Array<[string, string]>;
  if (query.length) path += `?${new URLSearchParams(query)}`;
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: opts.body === undefined ? {} : { 'content-type': 'application/json' },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new ApiError(res.status, data?.code ?? 'CLUSTER_ERR_API_INTERNAL', data?.message ?? res.statusText);
  return { status: res.status, data };
}

/** The message to show for a failed call: the API's code and words. */
export function describe(err: unknown): string {
  return err instanceof ApiError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
}
