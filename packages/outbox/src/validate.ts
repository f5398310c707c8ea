import { InvalidEventError } from './errors.ts';
import type { EventInput } from './event.ts';

const topicPattern = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,248}$/;
const maxKeyLength = 1024;
const maxTenantLength = 255;

export interface ValidEvent {
  readonly topic: string;
  readonly key: string | null;
  readonly payloadText: string;
  readonly headersText: string;
  readonly tenant: string | null;
}

/** Checks one event and serialises it; throws `InvalidEventError` naming the field and the fix. */
export function validateEvent(input: EventInput, index: number, maxPayloadBytes: number): ValidEvent {
  if (typeof input !== 'object' || input === null) {
    throw new InvalidEventError('invalid-event', index, undefined, `expected an object with topic and payload, got ${typeof input}`);
  }
  const { topic } = input;
  if (typeof topic !== 'string' || !topicPattern.test(topic)) {
    throw new InvalidEventError(
      'invalid-topic',
      index,
      typeof topic === 'string' ? topic : undefined,
      `topic ${JSON.stringify(topic)} is not valid; use 1 to 249 letters, digits, ".", "_" or "-", not starting with "." or "-"`,
    );
  }
  const key = optionalText(input.key, 'key', maxKeyLength, index, topic, 'invalid-key');
  const tenant = optionalText(input.tenant, 'tenant', maxTenantLength, index, topic, 'invalid-tenant');
  const headersText = headersToJson(input.headers, index, topic);
  if (input.payload === undefined) {
    throw new InvalidEventError('payload-not-json', index, topic, 'payload is undefined; pass null for an empty payload');
  }
  const problem = findNonJson(input.payload, 'payload', new Set());
  if (problem) throw new InvalidEventError('payload-not-json', index, topic, problem);
  const payloadText = JSON.stringify(input.payload);
  const bytes = Buffer.byteLength(payloadText, 'utf8');
  if (bytes > maxPayloadBytes) {
    throw new InvalidEventError(
      'payload-too-large',
      index,
      topic,
      `payload is ${bytes} bytes of JSON, over the limit of ${maxPayloadBytes}; store large data elsewhere and send a reference, or raise maxPayloadBytes`,
    );
  }
  return { topic, key, payloadText, headersText, tenant };
}

function optionalText(
  value: unknown,
  field: string,
  maxLength: number,
  index: number,
  topic: string,
  reason: 'invalid-key' | 'invalid-tenant',
): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength || value.includes('\u0000')) {
    throw new InvalidEventError(
      reason,
      index,
      topic,
      `${field} must be a non-empty string of at most ${maxLength} characters without NUL, or null; got ${describe(value)}`,
    );
  }
  return value;
}

function headersToJson(headers: unknown, index: number, topic: string): string {
  if (headers === undefined || headers === null) return '{}';
  if (typeof headers !== 'object' || Array.isArray(headers) || !isPlainObject(headers)) {
    throw new InvalidEventError('invalid-headers', index, topic, `headers must be a plain object of strings, got ${describe(headers)}`);
  }
  for (const [name, value] of Object.entries(headers)) {
    if (name.length === 0 || typeof value !== 'string' || textProblem(name, 'name') || textProblem(value, 'value')) {
      throw new InvalidEventError(
        'invalid-headers',
        index,
        topic,
        `header ${JSON.stringify(name)} must have a non-empty name and a string value, neither with a NUL or a lone UTF-16 surrogate; got ${describe(value)}`,
      );
    }
  }
  return JSON.stringify(headers);
}

/**
 * Returns a description of the first part of `value` that JSON cannot carry faithfully (instead of
 * letting JSON.stringify drop it or throw an unhelpful error), or undefined when all of it can.
 */
function findNonJson(value: unknown, path: string, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'string':
      return textProblem(value, path);
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${path} is ${value}, which JSON cannot represent`;
    case 'bigint':
      return `${path} is a BigInt; convert it to a string or number first`;
    case 'function':
    case 'symbol':
    case 'undefined':
      return `${path} is ${typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`}, which JSON cannot represent`;
  }
  if (value === null) return undefined;
  const object = value as object;
  if (object instanceof Date) {
    return Number.isNaN(object.getTime()) ? `${path} is an invalid Date` : undefined;
  }
  if (seen.has(object)) return `${path} refers back to itself (a cycle); JSON cannot represent cycles`;
  seen.add(object);
  try {
    if (Array.isArray(object)) {
      for (let i = 0; i < object.length; i++) {
        const problem = findNonJson(object[i], `${path}[${i}]`, seen);
        if (problem) return problem;
      }
      return undefined;
    }
    if (!isPlainObject(object)) {
      return `${path} is a ${object.constructor?.name ?? 'non-plain object'}; convert it to a plain object first`;
    }
    for (const [name, item] of Object.entries(object)) {
      if (item === undefined) continue; // dropped, as JSON does for absent optional properties
      const problem = textProblem(name, `the key ${JSON.stringify(name)} of ${path}`) ?? findNonJson(item, `${path}.${name}`, seen);
      if (problem) return problem;
    }
    return undefined;
  } finally {
    seen.delete(object);
  }
}

/**
 * Text JSON can spell but PostgreSQL's jsonb (which consumers, dead letters and most tools use)
 * refuses: a NUL character, or half of a UTF-16 surrogate pair.
 */
function textProblem(text: string, path: string): string | undefined {
  if (text.includes('\u0000')) return `${path} contains a NUL character, which PostgreSQL jsonb cannot store`;
  if (!text.isWellFormed()) return `${path} contains a lone UTF-16 surrogate (half of an emoji or other astral character); fix the string's encoding`;
  return undefined;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : (value.constructor?.name ?? 'an object');
  return typeof value;
}
