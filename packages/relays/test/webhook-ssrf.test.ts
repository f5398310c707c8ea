import { testEvent, startWebhookServer } from '@tidings/relays/testing';
import {
  classifyAddress,
  judgeAddress,
  migrateWebhooks,
  WebhookAddressRefusedError,
  webhookEndpoints,
  webhookTransport,
  type Resolver,
} from '@tidings/relays/webhook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

describe('the SSRF guard', () => {
  it('refuses every non-public kind of address, in IPv4 and IPv6, and in the IPv6 forms that carry IPv4', () => {
    const cases: Array<[string, string | undefined]> = [
      ['93.184.216.34', undefined],
      ['8.8.8.8', undefined],
      ['2606:4700:4700::1111', undefined],
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['::1', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.1.1', 'link-local'],
      ['fe80::1', 'link-local'],
      ['fe80::1%eth0', 'link-local'],
      ['169.254.169.254', 'metadata'],
      ['fd00:ec2::254', 'metadata'],
      ['100.100.100.200', 'metadata'],
      ['100.64.0.1', 'shared'],
      ['100.127.255.254', 'shared'],
      ['224.0.0.1', 'multicast'],
      ['ff02::1', 'multicast'],
      ['255.255.255.255', 'broadcast'],
      ['240.0.0.1', 'reserved'],
      ['192.0.2.10', 'documentation'],
      ['2001:db8::1', 'documentation'],
      ['198.18.0.1', 'benchmarking'],
      ['fc00::1', 'unique-local'],
      ['fd12:3456::1', 'unique-local'],
      ['fec0::1', 'site-local'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::ffff:169.254.169.254', 'metadata'],
      ['::ffff:10.0.0.1', 'private'],
      ['::ffff:8.8.8.8', undefined],
      ['::10.0.0.1', 'private'],
      ['64:ff9b::a00:1', 'private'],
      ['64:ff9b::808:808', undefined],
      ['2002:a00:1::', 'private'],
      ['2002:c0a8:101::1', 'private'],
      ['2001::1', 'translation'],
      ['100::1', 'reserved'],
      ['4000::1', 'reserved'],
      ['::a00:1', 'private'],
    ];
    const wrong = cases.filter(([address, category]) => classifyAddress(address) !== category).map(([a, c]) => `${a}: expected ${c}, got ${classifyAddress(a)}`);
    expect(wrong).toEqual([]);
  });

  it('lets an explicit allow-list through, but a metadata address only when named exactly', () => {
    expect(judgeAddress('127.0.0.1')).toEqual({ allowed: false, category: 'loopback' });
    expect(judgeAddress('127.0.0.1', { allow: ['127.0.0.0/8'] })).toEqual({ allowed: true });
    expect(judgeAddress('::ffff:127.0.0.1', { allow: ['127.0.0.1'] })).toEqual({ allowed: true });
    expect(judgeAddress('10.9.9.9', { allow: ['127.0.0.0/8'] })).toEqual({ allowed: false, category: 'private' });
    expect(judgeAddress('169.254.169.254', { allow: ['169.254.0.0/16'] })).toEqual({ allowed: false, category: 'metadata' });
    expect(judgeAddress('169.254.169.254', { allow: ['169.254.169.254/32'] })).toEqual({ allowed: true });
    expect(() => judgeAddress('10.0.0.1', { allow: ['10.0.0.0/33'] })).toThrow(/not an IP address or CIDR range/);
  });

  describe('at registration', () => {
    let outbox: TestOutbox;
    beforeAll(async () => {
      outbox = await freshOutbox('webhook_ssrf');
      await migrateWebhooks(outbox.db, { schema: outbox.schema });
    });
    afterAll(() => outbox.close());

    const fakeDns = (table: Record<string, string[]>): Resolver => async (host) => {
      const addresses = table[host];
      if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };

    it('rejects URLs that point or resolve to refused addresses with a clear error, and writes nothing', async () => {
      const endpoints = webhookEndpoints({
        schema: outbox.schema,
        keyring: testKeyring,
        addressPolicy: { resolve: fakeDns({ 'internal.example.com': ['10.0.0.7'], 'mixed.example.com': ['93.184.216.34', '192.168.0.2'], localhost: ['127.0.0.1', '::1'] }) },
      });
      const refused: Array<[string, string, string | undefined]> = [
        ['http://127.0.0.1:8080/hooks', 'loopback', '127.0.0.1'],
        ['http://0x7f.1/hooks', 'loopback', '127.0.0.1'],
        ['http://2130706433/hooks', 'loopback', '127.0.0.1'],
        ['http://localhost/hooks', 'loopback', '127.0.0.1'],
        ['http://169.254.169.254/latest/meta-data/', 'metadata', '169.254.169.254'],
        ['http://[::ffff:169.254.169.254]/', 'metadata', '::ffff:a9fe:a9fe'],
        ['http://[fd00:ec2::254]/', 'metadata', 'fd00:ec2::254'],
        ['https://internal.example.com/hooks', 'private', '10.0.0.7'],
        ['https://mixed.example.com/hooks', 'private', '192.168.0.2'],
        ['https://nowhere.example.com/hooks', 'unresolvable', undefined],
        ['file:///etc/passwd', 'scheme', undefined],
      ];
      for (const [url, reason, address] of refused) {
        const error = await endpoints.create(outbox.db, { url }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, url).toBeInstanceOf(WebhookAddressRefusedError);
        expect(error, url).toMatchObject({ reason, address });
      }
      const error = (await endpoints.create(outbox.db, { url: 'https://internal.example.com/hooks' }).catch((e: unknown) => e)) as Error;
      expect(error.message).toBe(
        'webhook URL https://internal.example.com/hooks is refused: 10.0.0.7 is a private address (internal.example.com resolves to 10.0.0.7). ' +
          'Webhooks are not sent to loopback, private, link-local, shared, multicast, reserved or cloud metadata addresses, to prevent ' +
          "server-side request forgery. For local development or tests, allow the range explicitly: addressPolicy({ allow: ['10.0.0.7/32'] }).",
      );
      expect(await endpoints.list(outbox.db)).toEqual([]);
    });

    it('rejects a new URL on update the same way, and accepts public and allow-listed ones', async () => {
      const endpoints = webhookEndpoints({ schema: outbox.schema, keyring: testKeyring, addressPolicy: { resolve: fakeDns({ 'hooks.example.com': ['93.184.216.34'] }) } });
      const endpoint = await endpoints.create(outbox.db, { url: 'https://hooks.example.com/in' });
      await expect(endpoints.update(outbox.db, endpoint.id, { url: 'http://10.1.1.1/' })).rejects.toThrow(WebhookAddressRefusedError);
      expect((await endpoints.get(outbox.db, endpoint.id))!.url).toBe('https://hooks.example.com/in');
      const local = webhookEndpoints({ schema: outbox.schema, keyring: testKeyring, addressPolicy: { allow: ['127.0.0.1'] } });
      expect((await local.create(outbox.db, { url: 'http://127.0.0.1:9/hooks' })).url).toBe('http://127.0.0.1:9/hooks');
    });
  });

  describe('at send time', () => {
    it('checks the resolved address on every new connection and connects to the address it checked', async () => {
      const server = await startWebhookServer((req, res) => res.writeHead(204).end());
      let answer = ['127.0.0.1'];
      const lookups: string[] = [];
      const transport = webhookTransport({
        url: `http://hooks.test:${server.port}/in`,
        secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
        addressPolicy: {
          allow: ['127.0.0.1/32'],
          // hooks.test does not exist in any real DNS: a request can only reach the server through this answer.
          resolve: async (host) => {
            lookups.push(host);
            return answer.map((address) => ({ address, family: 4 }));
          },
        },
      });
      try {
        const signal = AbortSignal.timeout(5_000);
        expect((await transport.send([testEvent({ topic: 't' })], signal))[0]!.status).toBe('delivered');
        expect(server.handled).toBe(1);

        answer = ['10.0.0.9']; // the name now points inside the network (DNS rebinding)
        server.cutConnections(); // the next request needs a new connection
        const [outcome] = await transport.send([testEvent({ topic: 't' })], signal);
        expect(outcome).toMatchObject({ status: 'unavailable', error: { name: 'WebhookAddressRefusedError', reason: 'private', address: '10.0.0.9' } });
        expect((outcome as { error: Error }).error.message).toMatch(/^webhook URL http:\/\/hooks\.test:\d+\/in is refused: 10\.0\.0\.9 is a private address/);
        expect(server.handled).toBe(1);
        expect(lookups).toEqual(['hooks.test', 'hooks.test']);
      } finally {
        await transport.close();
        await server.close();
      }
    });

    it('refuses a literal address before any request when the policy does not allow it', async () => {
      const server = await startWebhookServer((req, res) => res.writeHead(204).end());
      const transport = webhookTransport({ url: server.url, secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'] });
      try {
        const [outcome] = await transport.send([testEvent({ topic: 't' })], AbortSignal.timeout(5_000));
        expect(outcome).toMatchObject({ status: 'unavailable', error: { reason: 'loopback', address: '127.0.0.1' } });
        expect(server.handled).toBe(0);
      } finally {
        await transport.close();
        await server.close();
      }
    });
  });
});
