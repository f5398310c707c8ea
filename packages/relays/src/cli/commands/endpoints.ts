import { databaseFlags, parseFlags, zeroOrMore } from '../args.ts';
import { openDatabase } from '../database.ts';
import { beginEmbeddedKeyRotation } from '../keyring.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings endpoints add|list|update|rotate-secret|rotate-key|disable|enable|remove: webhook endpoints

  add --url URL [--topic T]... [--tenant ID] [--description TEXT]
                        register an endpoint; prints its id and signing secret (shown once)
  list [--json]         every endpoint with its state and last error (URL credentials shown as ***)
  update ID [--url URL] [--topic T]... [--all-topics] [--description TEXT]
  rotate-secret ID [--grace-hours N]
                        new secret; the old one stays valid (both signatures sent) for N hours
                        (default 24; 0 revokes it at once, e.g. after a leak)
  rotate-key            re-encrypt every stored secret under TIDINGS_SECRET_KEY, reading the old
                        ones with TIDINGS_SECRET_KEY_OLD; on the embedded database without
                        TIDINGS_SECRET_KEY, a new key is generated into .tidings/secret-key
  disable ID [--reason TEXT]
  enable ID
  remove ID

  --allow CIDR          let endpoint URLs resolve to this non-public range (development; repeatable)
  --database URL, --schema NAME

Signing secrets are stored encrypted (AES-256-GCM) under TIDINGS_SECRET_KEY: 32 random bytes in
base64 (\`openssl rand -base64 32\`). The embedded database keeps its own key in .tidings/secret-key.
Deliveries run in \`tidings relay\` when its config has "webhooks": true.`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('endpoints', args, {
    ...databaseFlags,
    url: { type: 'string' },
    topic: { type: 'string', multiple: true },
    'all-topics': { type: 'boolean' },
    tenant: { type: 'string' },
    description: { type: 'string' },
    'grace-hours': { type: 'string' },
    reason: { type: 'string' },
    allow: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const [action, id] = positionals;
  const needsId = (): string => {
    if (!id) throw new UsageError(`tidings endpoints ${action} needs the endpoint id (see \`tidings endpoints list\`)`);
    return id;
  };
  const { webhookEndpoints, migrateWebhooks, rotateWebhookSecretKey } = await import('../../webhook/index.ts');
  const graceHours = action === 'rotate-secret' ? (zeroOrMore('grace-hours', values['grace-hours']) ?? 24) : 0;
  const { db, close, keyring: keys, folder } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    const keyring = await keys();
    await migrateWebhooks(db, { schema: values.schema, keyring });
    const endpoints = webhookEndpoints({ schema: values.schema, addressPolicy: { allow: values.allow ?? [] }, keyring });
    switch (action) {
      case 'add': {
        if (!values.url) throw new UsageError('tidings endpoints add needs --url URL');
        const created = await endpoints.create(db, {
          url: values.url,
          topics: values.topic ?? null,
          tenant: values.tenant ?? null,
          description: values.description ?? '',
        });
        console.log(`endpoint ${created.id} → ${created.url}\nsigning secret (store it now, it is not shown again): ${created.secret}`);
        return 0;
      }
      case 'list': {
        const all = await endpoints.list(db, { limit: 1000 });
        if (values.json) console.log(JSON.stringify(all, null, 2));
        else if (all.length === 0) console.log('no endpoints');
        for (const e of values.json ? [] : all) {
          const state = e.enabled ? (e.failingSince ? `failing since ${e.failingSince.toISOString()}` : 'enabled') : `disabled (${e.disabled?.reason}: ${e.disabled?.detail})`;
          console.log(`${e.id}  ${e.url}  topics=${e.topics?.join(',') ?? '*'}  tenant=${e.tenant ?? '*'}  ${state}`);
        }
        return 0;
      }
      case 'update': {
        const topics = values['all-topics'] ? null : values.topic;
        const updated = await endpoints.update(db, needsId(), {
          ...(values.url === undefined ? {} : { url: values.url }),
          ...(topics === undefined ? {} : { topics }),
          ...(values.description === undefined ? {} : { description: values.description }),
        });
        console.log(`endpoint ${updated.id} updated (version ${updated.version})`);
        return 0;
      }
      case 'rotate-secret': {
        const rotated = await endpoints.rotateSecret(db, needsId(), { gracePeriodMs: Math.round(graceHours * 3_600_000) });
        const previous = rotated.previousValidUntil
          ? `the previous one stays valid until ${rotated.previousValidUntil.toISOString()}`
          : 'the previous ones are revoked: they sign nothing from now on';
        console.log(`new signing secret (store it now, it is not shown again): ${rotated.secret}\n${previous}`);
        return 0;
      }
      case 'rotate-key': {
        const embeddedRotation = folder !== undefined && !process.env.TIDINGS_SECRET_KEY ? await beginEmbeddedKeyRotation(folder) : undefined;
        const done = await rotateWebhookSecretKey(db, { schema: values.schema, keyring: embeddedRotation?.keyring ?? keyring });
        await embeddedRotation?.finish();
        console.log(
          `re-encrypted ${done.reencrypted} signing secrets under key id ${done.keyId}` +
            (done.encrypted > 0 ? ` and encrypted ${done.encrypted} that were stored in plaintext` : '') +
            (embeddedRotation ? `; the new key is in ${folder}/secret-key` : '; every secret is now under the current key: TIDINGS_SECRET_KEY_OLD can be removed'),
        );
        return 0;
      }
      case 'disable':
        await endpoints.disable(db, needsId(), values.reason);
        console.log(`endpoint ${id} disabled; \`tidings endpoints enable ${id}\` resumes where it stopped`);
        return 0;
      case 'enable':
        await endpoints.enable(db, needsId());
        console.log(`endpoint ${id} enabled`);
        return 0;
      case 'remove':
        if (!(await endpoints.remove(db, needsId()))) throw new UsageError(`no endpoint ${id}`);
        console.log(`endpoint ${id} removed`);
        return 0;
      default:
        throw new UsageError(`tidings endpoints needs add, list, update, rotate-secret, rotate-key, disable, enable or remove${action ? `, not "${action}"` : ''}`);
    }
  } finally {
    await close();
  }
}
