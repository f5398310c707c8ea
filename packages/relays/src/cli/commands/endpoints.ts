import { databaseFlags, parseFlags, wholeNumber } from '../args.ts';
import { openDatabase } from '../database.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings endpoints add|list|update|rotate-secret|disable|enable|remove: webhook endpoints

  add --url URL [--topic T]... [--tenant ID] [--description TEXT]
                        register an endpoint; prints its id and signing secret (shown once)
  list [--json]         every endpoint with its state and last error
  update ID [--url URL] [--topic T]... [--all-topics] [--description TEXT]
  rotate-secret ID [--grace-hours N]
                        new secret; the old one stays valid (both signatures sent) for N hours (default 24)
  disable ID [--reason TEXT]
  enable ID
  remove ID

  --allow CIDR          let endpoint URLs resolve to this non-public range (development; repeatable)
  --database URL, --schema NAME

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
  const { webhookEndpoints, migrateWebhooks } = await import('../../webhook/index.ts');
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    await migrateWebhooks(db, { schema: values.schema });
    const endpoints = webhookEndpoints({ schema: values.schema, addressPolicy: { allow: values.allow ?? [] } });
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
        const hours = wholeNumber('grace-hours', values['grace-hours']) ?? 24;
        const rotated = await endpoints.rotateSecret(db, needsId(), { gracePeriodMs: hours * 3_600_000 });
        console.log(`new signing secret: ${rotated.secret}\nthe previous one stays valid until ${rotated.previousValidUntil?.toISOString?.() ?? rotated.previousValidUntil}`);
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
        throw new UsageError(`tidings endpoints needs add, list, update, rotate-secret, disable, enable or remove${action ? `, not "${action}"` : ''}`);
    }
  } finally {
    await close();
  }
}
