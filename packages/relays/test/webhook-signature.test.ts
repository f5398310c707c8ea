import {
  generateWebhookSecret,
  signWebhook,
  verifyWebhook,
  WebhookVerificationError,
  type VerificationFailureReason,
} from '@tidings/relays/webhook';
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';

/** The reference implementation's test vector (standard-webhooks, libraries/javascript/src/webhook.test.ts). */
const vector = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};

/** The reference implementation, `standardwebhooks` on npm (a devDependency of the tests). */
interface ReferenceWebhook {
  sign(id: string, timestamp: Date, payload: string): string;
  verify(payload: string, headers: Record<string, string>): unknown;
}
async function reference(secret: string): Promise<ReferenceWebhook> {
  const specifier = 'standardwebhooks';
  let module: { Webhook: new (secret: string) => ReferenceWebhook };
  try {
    module = await import(specifier);
  } catch (error) {
    throw new Error(`the reference implementation is missing: add "standardwebhooks" to the devDependencies of the tests workspace (${(error as Error).message})`);
  }
  return new module.Webhook(secret);
}

function headersFor(id: string, timestamp: number, signature: string) {
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
}

function failure(body: () => unknown): VerificationFailureReason {
  try {
    body();
  } catch (error) {
    expect(error).toBeInstanceOf(WebhookVerificationError);
    return (error as WebhookVerificationError).reason;
  }
  throw new Error('expected verification to fail');
}

describe('Standard Webhooks signatures', () => {
  it("reproduce the specification's test vector", () => {
    expect(signWebhook({ id: vector.id, timestamp: vector.timestamp, body: vector.body }, vector.secret)).toBe(vector.signature);
    const now = vector.timestamp * 1000;
    expect(verifyWebhook(headersFor(vector.id, vector.timestamp, vector.signature), vector.body, vector.secret, { now }).id).toBe(vector.id);
    // The whsec_ prefix is optional on the verifying side, as in the reference libraries.
    expect(verifyWebhook(headersFor(vector.id, vector.timestamp, vector.signature), vector.body, vector.secret.slice(6), { now }).id).toBe(vector.id);
  });

  it('are HMAC-SHA256 over "id.timestamp.body" with the base64-decoded secret, computed independently', () => {
    const secret = generateWebhookSecret();
    const body = JSON.stringify({ text: 'héllo 🎉', n: 1 });
    const mac = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`evt_1.1700000000.${body}`).digest('base64');
    expect(signWebhook({ id: 'evt_1', timestamp: 1_700_000_000, body }, secret)).toBe(`v1,${mac}`);
    expect(signWebhook({ id: 'evt_1', timestamp: 1_700_000_000, body: Buffer.from(body) }, secret)).toBe(`v1,${mac}`);
  });

  it('verify with the reference implementation, and ours verifies what the reference signs', async () => {
    const secret = generateWebhookSecret();
    const theirs = await reference(secret);
    const timestamp = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ id: 'E1', payload: { unicode: 'ключ 日本語 🎉', quote: '"\\' } });
    const ours = signWebhook({ id: 'E1', timestamp, body }, secret);
    expect(theirs.verify(body, headersFor('E1', timestamp, ours))).toEqual(JSON.parse(body));
    const signed = theirs.sign('E2', new Date(timestamp * 1000), body);
    expect(verifyWebhook(headersFor('E2', timestamp, signed), body, secret).id).toBe('E2');
    expect((await reference(vector.secret)).sign(vector.id, new Date(vector.timestamp * 1000), vector.body)).toBe(vector.signature);
  });

  it('carry one signature per secret during a rotation, and each secret verifies on its own (also with the reference)', async () => {
    const [old, next] = [generateWebhookSecret(), generateWebhookSecret()];
    const timestamp = Math.floor(Date.now() / 1000);
    const header = signWebhook({ id: 'E1', timestamp, body: '{}' }, [next, old]);
    expect(header.split(' ')).toHaveLength(2);
    for (const secret of [old, next]) {
      expect(verifyWebhook(headersFor('E1', timestamp, header), '{}', secret).id).toBe('E1');
      expect((await reference(secret)).verify('{}', headersFor('E1', timestamp, header))).toEqual({});
    }
    expect(failure(() => verifyWebhook(headersFor('E1', timestamp, header), '{}', generateWebhookSecret()))).toBe('signature-mismatch');
  });

  it('skip unknown signature versions and accept any matching v1 among several', () => {
    const timestamp = Math.floor(Date.now() / 1000);
    const good = signWebhook({ id: 'E1', timestamp, body: '{}' }, vector.secret);
    const header = ['v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==', 'v2,' + good.slice(3), 'v1,AAAA', good].join(' ');
    expect(verifyWebhook(headersFor('E1', timestamp, header), '{}', vector.secret).id).toBe('E1');
    expect(failure(() => verifyWebhook(headersFor('E1', timestamp, 'v2,' + good.slice(3)), '{}', vector.secret))).toBe('signature-mismatch');
  });

  it('reject a tampered body, a wrong secret, a changed id, and a partial signature', () => {
    const timestamp = Math.floor(Date.now() / 1000);
    const body = '{"amount":100}';
    const signature = signWebhook({ id: 'E1', timestamp, body }, vector.secret);
    expect(failure(() => verifyWebhook(headersFor('E1', timestamp, signature), '{"amount":1000}', vector.secret))).toBe('signature-mismatch');
    expect(failure(() => verifyWebhook(headersFor('E1', timestamp, signature), body, generateWebhookSecret()))).toBe('signature-mismatch');
    expect(failure(() => verifyWebhook(headersFor('E2', timestamp, signature), body, vector.secret))).toBe('signature-mismatch');
    expect(failure(() => verifyWebhook(headersFor('E1', timestamp, signature.slice(0, 12)), body, vector.secret))).toBe('signature-mismatch');
    expect(failure(() => verifyWebhook(headersFor('E1', timestamp, 'v1,'), body, vector.secret))).toBe('signature-mismatch');
  });

  it('reject a replayed old timestamp and one too far in the future, with a 5 minute default tolerance', () => {
    const now = Date.now();
    const at = (offsetMs: number) => Math.floor((now + offsetMs) / 1000);
    const sign = (timestamp: number) => headersFor('E1', timestamp, signWebhook({ id: 'E1', timestamp, body: '{}' }, vector.secret));
    expect(verifyWebhook(sign(at(-299_000)), '{}', vector.secret, { now }).id).toBe('E1');
    expect(verifyWebhook(sign(at(299_000)), '{}', vector.secret, { now }).id).toBe('E1');
    expect(failure(() => verifyWebhook(sign(at(-301_000)), '{}', vector.secret, { now }))).toBe('timestamp-too-old');
    expect(failure(() => verifyWebhook(sign(at(301_000)), '{}', vector.secret, { now }))).toBe('timestamp-too-new');
    expect(failure(() => verifyWebhook(sign(at(-20_000)), '{}', vector.secret, { now, toleranceMs: 10_000 }))).toBe('timestamp-too-old');
  });

  it('reject missing headers and a timestamp that is not whole seconds, naming what is wrong', () => {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = headersFor('E1', timestamp, signWebhook({ id: 'E1', timestamp, body: '{}' }, vector.secret));
    for (const name of Object.keys(headers)) {
      const partial: Record<string, string> = { ...headers };
      delete partial[name];
      expect(() => verifyWebhook(partial, '{}', vector.secret)).toThrow(`missing header ${name}`);
    }
    expect(failure(() => verifyWebhook({ ...headers, 'webhook-timestamp': 'hello' }, '{}', vector.secret))).toBe('invalid-timestamp');
    expect(failure(() => verifyWebhook({ ...headers, 'webhook-timestamp': `${timestamp}.5` }, '{}', vector.secret))).toBe('invalid-timestamp');
    // Header names are case-insensitive, and a Fetch Headers object works as well.
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    expect(verifyWebhook(upper, '{}', vector.secret).id).toBe('E1');
    expect(verifyWebhook(new Headers(headers), '{}', vector.secret).id).toBe('E1');
  });

  it('use secrets of 24 to 64 random bytes in the whsec_ format, and refuse malformed ones', () => {
    const secret = generateWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(generateWebhookSecret()).not.toBe(secret);
    expect(() => signWebhook({ id: 'E', timestamp: 1, body: '' }, 'whsec_c2hvcnQ=')).toThrow(/24 to 64 bytes/);
    expect(() => signWebhook({ id: 'E', timestamp: 1, body: '' }, 'whsec_not base64!')).toThrow(/base64/);
  });

  it('refuse an empty list of secrets with a ConfigError naming the option', () => {
    expect(() => verifyWebhook({}, '', [])).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'secrets', message: expect.stringMatching(/at least one secret/) }));
    expect(() => signWebhook({ id: 'E', timestamp: 1, body: '' }, [])).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'secrets' }));
  });
});
