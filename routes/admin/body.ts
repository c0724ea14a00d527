/**
 * JSON bodies for the admin door: read with the shared capped reader (routes/body.ts), then
 * parsed and shape-checked; parse failures are 400 without echoing the body.
 */
import type { Context } from 'koa';
import { DaemonError, invalid } from '../../daemon/errors.js';
import { readBody } from '../body.js';

const MAX_JSON_DEPTH = 64;
const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Refuse what JSON allows but the daemon cannot honour: the keys `__proto__`, `constructor` and
 * `prototype` anywhere (merge-patch libraries stop at them and apply half a patch; plain-object
 * maps silently drop them) and nesting deeper than MAX_JSON_DEPTH (serialising it later would
 * overflow the stack). Iterative, so the check itself cannot overflow.
 * {"a": {"__proto__": 1}} -> 400 at /a/__proto__.
 */
function checkJsonShape(value: unknown): void {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v: value, path: '', depth: 0 }];
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const { v, path, depth } = top;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= MAX_JSON_DEPTH)
      throw invalid(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`, [{ path: path || '/', message: 'too deep' }]);
    for (const [k, child] of Object.entries(v)) {
      const childPath = `${path}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`;
      if (RESERVED_KEYS.has(k)) throw invalid('reserved key in body', [{ path: childPath, message: 'reserved name' }]);
      stack.push({ v: child, path: childPath, depth: depth + 1 });
    }
  }
}

/** Read a JSON body (application/json or application/merge-patch+json). */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  const type = ctx.request.type;
  if (type !== 'application/json' && type !== 'application/merge-patch+json') {
    throw new DaemonError('UnsupportedMediaType', 'send JSON (Content-Type: application/json)');
  }
  const raw = await readBody(ctx.req, limit);
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    // V8 parses deep nesting recursively too: a stack overflow here is malformed input to us.
    throw invalid(err instanceof RangeError ? `JSON nested deeper than ${MAX_JSON_DEPTH} levels` : 'malformed JSON body');
  }
  checkJsonShape(value);
  return value;
}
