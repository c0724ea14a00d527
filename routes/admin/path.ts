/**
 * Path parameters of admin routes. A route's pattern guarantees its parameters
 * ('/instances/:name' always has a name); a missing one is a routing bug, not bad input.
 */

/** The value of path parameter `key`: '/v1/instances/vm1' with '/instances/:name' -> 'vm1'. */
export function pathParam(ctx: { params: Record<string, string | undefined> }, key: string): string {
  const v = ctx.params[key];
  if (v === undefined) throw new Error(`route has no :${key} parameter`);
  return v;
}
