import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { judgeAddress, type AddressPolicy } from './address-policy.ts';
import { InvalidEndpointError, WebhookAddressRefusedError } from './errors.ts';

/**
 * Parses and checks the form of a webhook URL: absolute http(s), no fragment, at most 2 000
 * characters. Throws `InvalidEndpointError`.
 */
export function parseWebhookUrl(url: string): URL {
  if (typeof url !== 'string' || url.length === 0 || url.length > 2000) {
    throw new InvalidEndpointError('url', 'must be an absolute http(s) URL of at most 2 000 characters');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidEndpointError('url', `"${url.slice(0, 100)}" is not an absolute URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new WebhookAddressRefusedError(redactUrl(parsed), parsed.hostname, undefined, 'scheme');
  }
  if (parsed.hash) throw new InvalidEndpointError('url', 'must not have a #fragment: it is never sent to the receiver');
  return parsed;
}

/** The URL without user name or password, for messages and logs. */
export function redactUrl(url: URL): string {
  if (!url.username && !url.password) return url.href;
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/** The host of a URL as an address would be written: IPv6 literals without brackets. */
export function bareHostname(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

/**
 * Resolves a webhook URL's host and checks every address it has under the policy; throws
 * `WebhookAddressRefusedError` when any of them is refused or the host does not resolve. Used at
 * registration; deliveries check again on every new connection (see {@link guardedLookup}).
 *
 * @example
 * await checkWebhookUrl(new URL('https://hooks.example.com/in'), { allow: [] });
 */
export async function checkWebhookUrl(url: URL, policy: AddressPolicy): Promise<LookupAddress[]> {
  const host = bareHostname(url);
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await resolveHost(url, host, policy);
  for (const { address } of addresses) refuseUnlessAllowed(url, host, address, policy);
  return addresses;
}

/** Throws `WebhookAddressRefusedError` unless `address` is allowed. */
export function refuseUnlessAllowed(url: URL, host: string, address: string, policy: AddressPolicy): void {
  const verdict = judgeAddress(address, policy);
  if (!verdict.allowed) throw new WebhookAddressRefusedError(redactUrl(url), host, address, verdict.category);
}

/**
 * A `lookup` for `http.request` that resolves the host, refuses the connection unless every
 * address passes the policy, and hands the socket exactly the addresses it checked: there is no
 * second DNS query between the check and the connect, so DNS rebinding cannot slip past it.
 */
export function guardedLookup(url: URL, policy: AddressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    const host = hostname.replace(/^\[|\]$/g, '');
    const resolving = isIP(host) ? Promise.resolve([{ address: host, family: isIP(host) }]) : resolveHost(url, host, policy);
    resolving
      .then((addresses) => {
        for (const { address } of addresses) refuseUnlessAllowed(url, host, address, policy);
        const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
        if (wanted.length === 0) throw new WebhookAddressRefusedError(redactUrl(url), host, undefined, 'unresolvable', `no IPv${String(options.family)} address`);
        if (options.all) callback(null, wanted);
        else callback(null, wanted[0]!.address, wanted[0]!.family);
      })
      .catch((error: NodeJS.ErrnoException) => callback(error, '', 0));
  };
}

async function resolveHost(url: URL, host: string, policy: AddressPolicy): Promise<LookupAddress[]> {
  let addresses: ReadonlyArray<{ address: string; family: number }>;
  try {
    addresses = policy.resolve ? await policy.resolve(host) : await dnsLookup(host, { all: true, order: 'verbatim' });
  } catch (error) {
    throw new WebhookAddressRefusedError(redactUrl(url), host, undefined, 'unresolvable', (error as NodeJS.ErrnoException).code ?? (error as Error).message);
  }
  if (addresses.length === 0) throw new WebhookAddressRefusedError(redactUrl(url), host, undefined, 'unresolvable');
  return addresses.map(({ address, family }) => ({ address, family }));
}
