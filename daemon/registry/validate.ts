/**
 * Compiled ajv validators for everything an admin submits. Errors become `{path, message}`
 * details that name the JSON pointer and the rule, never the submitted value.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { HOST_PATH_PATTERN, instanceSchema, OS_NAME_PATTERN, paramValuesSchema, type InstanceInput } from './model.js';
import { invalid, type ErrorDetail } from '../errors.js';
import { applianceTapProblem, METADATA_IPV4, parseAddressCidr } from '../net.js';

// ajv-formats is CommonJS; under nodenext its default export is the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;

const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);

const paramsBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['values'],
  properties: {
    values: paramValuesSchema,
    ttlSec: { type: 'integer', minimum: 1, maximum: 604800 },
    claimOnce: { type: 'boolean' },
  },
} as const;

const paramsPatchSchema = {
  ...paramsBodySchema,
  properties: {
    ...paramsBodySchema.properties,
    values: { ...paramValuesSchema, additionalProperties: { anyOf: [paramValuesSchema.additionalProperties, { type: 'null' }] } },
  },
} as const;

/**
 * Each validator is compiled on its first use, not when the module loads: compiling the instance
 * schema is about 0.1 s of the daemon's start, which validates nothing (stored instances are
 * verified by their MAC); the first admin write or Ganeti push pays it instead.
 */
function lazily<T>(schema: object): () => ValidateFunction<T> {
  let fn: ValidateFunction<T> | undefined;
  return () => (fn ??= ajv.compile<T>(schema));
}
const compiled = {
  instance: lazily<InstanceInput>(instanceSchema),
  paramsBody: lazily<ParamsBody>(paramsBodySchema),
  paramsPatch: lazily<ParamsPatch>(paramsPatchSchema),
};

/** Patterns whose rule reads better in words than as a regular expression. */
const PATTERN_RULES: Record<string, string> = {
  [HOST_PATH_PATTERN]: 'must be an absolute, normalized path: no control characters, no "." or ".." segments, no "//" or trailing "/"',
  [OS_NAME_PATTERN]: 'must be an OS name (letters, digits, "_", ".", "-"; optionally "+variant"), not a path',
};

/** A rule-only message: ajv's text, with nothing from the data. */
function detail(e: ErrorObject): ErrorDetail {
  let path = e.instancePath || '/';
  if (e.keyword === 'additionalProperties') {
    path = `${e.instancePath}/${(e.params as { additionalProperty: string }).additionalProperty}`;
    return { path, message: 'unknown field' };
  }
  if (e.keyword === 'required') {
    return { path: `${e.instancePath}/${(e.params as { missingProperty: string }).missingProperty}`, message: 'is required' };
  }
  if (e.keyword === 'propertyNames') return { path, message: 'has an invalid property name' };
  if (e.keyword === 'pattern') {
    const rule = PATTERN_RULES[(e.params as { pattern: string }).pattern];
    if (rule !== undefined) return { path, message: rule };
  }
  return { path, message: e.message ?? 'is invalid' };
}

function check<T>(fn: ValidateFunction<T>, data: unknown, what: string): T {
  if (!fn(data)) {
    const details = (fn.errors ?? []).filter((e) => e.keyword !== 'if').map(detail);
    const unique = details.filter((d, i) => details.findIndex((x) => x.path === d.path && x.message === d.message) === i);
    throw invalid(`invalid ${what}`, unique.slice(0, 50));
  }
  return data;
}

/** Rules JSON Schema cannot say: public key names are unique. */
function semanticProblems(doc: InstanceInput): ErrorDetail[] {
  const seen = new Set<string>();
  const out: ErrorDetail[] = [];
  (doc.publicKeys ?? []).forEach((k, i) => {
    if (seen.has(k.name)) out.push({ path: `/publicKeys/${String(i)}/name`, message: 'duplicate key name' });
    seen.add(k.name);
  });
  const comm = commIpv4Problem(doc.comm.ipv4);
  if (comm !== undefined) out.push({ path: '/comm/ipv4', message: comm });
  // Install appliances' taps (the start-up sweep deletes leftovers by this prefix): never a guest's.
  const tap = doc.comm.tap === undefined ? undefined : applianceTapProblem(doc.comm.tap);
  if (tap !== undefined) out.push({ path: '/comm/tap', message: tap });
  return [...out, ...nicProblems(doc)];
}

/**
 * Comm IPv4 addresses no guest can have, whatever the comm range (docs/instance-schema.md):
 * the metadata address is the host's own (with it, every host process would be that guest);
 * 0.0.0.0/8 is where DHCP clients send from before they have an address; 224.0.0.0/3 is
 * multicast, reserved and the limited broadcast. The comm range's own network and broadcast
 * addresses are refused by the store, which knows the ranges. Messages name the rule, not the value.
 */
export function commIpv4Problem(ip: string): string | undefined {
  if (ip === METADATA_IPV4) return `must not be the metadata address ${METADATA_IPV4}`;
  const first = Number(ip.split('.')[0]);
  if (first === 0) return 'must not be in 0.0.0.0/8 (unspecified, "this network")';
  if (first >= 224) return 'must not be multicast, reserved or broadcast (224.0.0.0/3)';
  return undefined;
}

/** NICs: MACs unique (and not the comm NIC's), each address a real address with a prefix in range. */
function nicProblems(doc: InstanceInput): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const macs = new Set([doc.comm.mac]);
  const addresses = new Set<string>();
  (doc.nics ?? []).forEach((nic, i) => {
    if (macs.has(nic.mac)) out.push({ path: `/nics/${String(i)}/mac`, message: 'duplicate MAC (the comm NIC or another NIC has it)' });
    macs.add(nic.mac);
    (nic.addresses ?? []).forEach((text, j) => {
      const a = parseAddressCidr(text);
      if (!a)
        out.push({
          path: `/nics/${String(i)}/addresses/${String(j)}`,
          message: 'must be an IPv4 or IPv6 address with a prefix length (≤ 32 / ≤ 128)',
        });
      else if (addresses.has(a.address)) out.push({ path: `/nics/${String(i)}/addresses/${String(j)}`, message: 'duplicate address' });
      else addresses.add(a.address);
    });
  });
  return out;
}

export function validateInstance(data: unknown): InstanceInput {
  const doc = check<InstanceInput>(compiled.instance(), data, 'instance document');
  const problems = semanticProblems(doc);
  if (problems.length > 0) throw invalid('invalid instance document', problems);
  return doc;
}

export interface ParamsBody {
  values: Record<string, string>;
  ttlSec?: number;
  claimOnce?: boolean;
}
export interface ParamsPatch {
  values: Record<string, string | null>;
  ttlSec?: number;
  claimOnce?: boolean;
}

export function validateParamsBody(data: unknown): ParamsBody {
  return check<ParamsBody>(compiled.paramsBody(), data, 'parameters');
}
export function validateParamsPatch(data: unknown): ParamsPatch {
  return check<ParamsPatch>(compiled.paramsPatch(), data, 'parameters');
}
