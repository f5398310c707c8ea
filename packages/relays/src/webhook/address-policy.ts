import { ConfigError } from '@tidings/outbox';
import { isIP } from 'node:net';
import type { AddressCategory } from './errors.ts';

/**
 * Which addresses webhooks may be sent to. By default only public (globally routable) unicast
 * addresses; `allow` lists exceptions for local development and tests.
 */
export interface AddressPolicy {
  /**
   * Addresses or CIDR ranges allowed even though they are not public, e.g. `['127.0.0.1/32', '::1/128']`.
   * A cloud metadata address is allowed only by an entry naming exactly it (a /32 or /128), never
   * by a wider range.
   */
  readonly allow?: readonly string[];
  /**
   * Resolves a host name to its addresses. Default: the system resolver (`dns.lookup`, which
   * honours /etc/hosts). Every address it returns is checked, and the connection is made to a
   * checked address, never through a second lookup.
   */
  readonly resolve?: Resolver;
}

/** A host name's addresses, as `dns.lookup(host, { all: true })` gives them. */
export type Resolver = (hostname: string) => Promise<ReadonlyArray<{ readonly address: string; readonly family: number }>>;

interface Range {
  readonly v6: boolean;
  readonly base: bigint;
  readonly bits: number;
}

/** The reason an address is refused, or undefined when webhooks may be sent to it. */
export type AddressVerdict = { readonly allowed: true } | { readonly allowed: false; readonly category: AddressCategory };

const v4Rules: ReadonlyArray<readonly [string, AddressCategory]> = [
  ['169.254.169.254/32', 'metadata'], // AWS, GCP, Azure, OpenStack instance metadata
  ['169.254.170.2/32', 'metadata'], // AWS ECS task metadata
  ['100.100.100.200/32', 'metadata'], // Alibaba Cloud metadata
  ['192.0.0.192/32', 'metadata'], // Oracle Cloud metadata
  ['255.255.255.255/32', 'broadcast'],
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'shared'], // carrier-grade NAT
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'reserved'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
];

const v6Rules: ReadonlyArray<readonly [string, AddressCategory]> = [
  ['fd00:ec2::254/128', 'metadata'], // AWS instance metadata over IPv6
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['64:ff9b:1::/48', 'translation'],
  ['100::/64', 'reserved'],
  ['2001:db8::/32', 'documentation'],
  ['3fff::/20', 'documentation'],
  ['2001::/32', 'translation'], // Teredo: the IPv4 inside cannot be checked reliably
  ['2001::/23', 'reserved'],
  ['fc00::/7', 'unique-local'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
  ['ff00::/8', 'multicast'],
];

const v4Ranges = v4Rules.map(([cidr, category]) => [parseRange(cidr), category] as const);
const v6Ranges = v6Rules.map(([cidr, category]) => [parseRange(cidr), category] as const);
const globalUnicast = parseRange('2000::/3');

/**
 * Classifies an IP address: undefined for a public address, otherwise why it is not one. IPv6
 * forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible, NAT64 `64:ff9b::/96`,
 * 6to4 `2002::/16`) are judged by that IPv4 address.
 *
 * @example
 * classifyAddress('10.1.2.3'); // 'private'
 * classifyAddress('::ffff:169.254.169.254'); // 'metadata'
 * classifyAddress('93.184.216.34'); // undefined
 */
export function classifyAddress(address: string): AddressCategory | undefined {
  const parsed = parseAddress(address);
  if (!parsed) return 'reserved';
  if (!parsed.v6) return categoryIn(v4Ranges, parsed.value, false);
  const embedded = embeddedIPv4(parsed.value);
  if (embedded !== undefined) return categoryIn(v4Ranges, embedded, false);
  const category = categoryIn(v6Ranges, parsed.value, true);
  if (category) return category;
  return inRange(globalUnicast, parsed.value) ? undefined : 'reserved';
}

/**
 * Judges an address under a policy: public addresses pass, others only when allow-listed.
 *
 * @example
 * judgeAddress('127.0.0.1', { allow: ['127.0.0.0/8'] }); // { allowed: true }
 */
export function judgeAddress(address: string, policy: AddressPolicy = {}): AddressVerdict {
  const category = classifyAddress(address);
  if (category === undefined) return { allowed: true };
  const parsed = parseAddress(address);
  if (!parsed) return { allowed: false, category };
  const candidates = [parsed];
  const embedded = parsed.v6 ? embeddedIPv4(parsed.value) : undefined;
  if (embedded !== undefined) candidates.push({ v6: false, value: embedded });
  const exact = category === 'metadata';
  for (const range of allowRanges(policy)) {
    if (exact && range.bits !== (range.v6 ? 128 : 32)) continue;
    if (candidates.some((candidate) => candidate.v6 === range.v6 && inRange(range, candidate.value))) return { allowed: true };
  }
  return { allowed: false, category };
}

/** Checks the entries of `allow` up front, so a typo fails at start-up rather than at the first send. */
export function validatePolicy(policy: AddressPolicy | undefined): AddressPolicy {
  allowRanges(policy ?? {});
  return policy ?? {};
}

const parsedPolicies = new WeakMap<AddressPolicy, Range[]>();

function allowRanges(policy: AddressPolicy): Range[] {
  let ranges = parsedPolicies.get(policy);
  if (ranges) return ranges;
  if (policy.allow !== undefined && !Array.isArray(policy.allow)) throw new ConfigError('addressPolicy.allow', 'expected a list of IP addresses or CIDR ranges, e.g. ["10.0.0.0/8"]');
  ranges = (policy.allow ?? []).map((entry) => {
    const range = typeof entry === 'string' ? parseRange(entry.includes('/') ? entry : `${entry}/${isIP(entry) === 6 ? 128 : 32}`, true) : undefined;
    if (!range) {
      throw new ConfigError('addressPolicy.allow', `${JSON.stringify(entry)} is not an IP address or CIDR range; pass entries like "127.0.0.1/32" or "::1/128"`);
    }
    return range;
  });
  parsedPolicies.set(policy, ranges);
  return ranges;
}

function categoryIn(ranges: ReadonlyArray<readonly [Range | undefined, AddressCategory]>, value: bigint, v6: boolean): AddressCategory | undefined {
  for (const [range, category] of ranges) if (range && range.v6 === v6 && inRange(range, value)) return category;
  return undefined;
}

function inRange(range: Range | undefined, value: bigint): boolean {
  if (!range) return false;
  const width = range.v6 ? 128 : 32;
  const shift = BigInt(width - range.bits);
  return value >> shift === range.base >> shift;
}

/** The IPv4 address inside an IPv6 one, for the forms that carry one. */
function embeddedIPv4(value: bigint): bigint | undefined {
  const low32 = value & 0xffffffffn;
  const high96 = value >> 32n;
  if (high96 === 0xffffn) return low32; // ::ffff:a.b.c.d, IPv4-mapped
  if (high96 === 0xffff0000n) return low32; // ::ffff:0:a.b.c.d, IPv4-translated
  if (high96 === 0n && low32 > 1n) return low32; // ::a.b.c.d, IPv4-compatible (deprecated)
  if (high96 === 0x64ff9b0000000000000000n) return low32; // 64:ff9b::a.b.c.d, NAT64
  if (value >> 112n === 0x2002n) return (value >> 80n) & 0xffffffffn; // 2002:aabb:ccdd::, 6to4
  return undefined;
}

interface ParsedAddress {
  readonly v6: boolean;
  readonly value: bigint;
}

function parseAddress(text: string): ParsedAddress | undefined {
  const address = text.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(address);
  if (family === 4) {
    return { v6: false, value: address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n) };
  }
  if (family !== 6) return undefined;
  // A trailing dotted IPv4 part (`::ffff:1.2.3.4`) becomes its two hexadecimal groups.
  const groups = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a: string, b: string, c: string, d: string) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
  );
  const [head = '', rest] = groups.split('::') as [string, string | undefined];
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => BigInt(parseInt(g, 16))));
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const fill = 8 - left.length - right.length;
  const all = [...left, ...Array<bigint>(rest === undefined ? 0 : Math.max(0, fill)).fill(0n), ...right];
  if (all.length !== 8) return undefined;
  return { v6: true, value: all.reduce((acc, group) => (acc << 16n) | group, 0n) };
}

function parseRange(cidr: string, lenient = false): Range | undefined {
  const [address = '', bitsText = ''] = cidr.split('/');
  const parsed = parseAddress(address);
  const bits = Number(bitsText);
  if (!parsed || !/^\d{1,3}$/.test(bitsText) || bits > (parsed.v6 ? 128 : 32)) {
    if (lenient) return undefined;
    throw new Error(`bad built-in range ${cidr}`);
  }
  return { v6: parsed.v6, base: parsed.value, bits };
}
