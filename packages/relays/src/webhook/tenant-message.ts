import { isIP } from 'node:net';
import { WebhookAddressRefusedError, WebhookDeliveryError } from './errors.ts';

/**
 * An attempt's error as the endpoint's tenant may read it (its stored last error and disabled
 * detail): what failed, without the addresses the sender's DNS resolved the tenant's host to,
 * which would map the sender's internal network for whoever registers a name pointing into it.
 * The full error stays in the dispatcher's `attempt` events, for the operator's logs.
 */
export function tenantMessage(error: Error | undefined): string {
  if (error === undefined) return 'delivery failed';
  if (error instanceof WebhookAddressRefusedError) {
    if (error.reason === 'scheme') return error.message;
    if (error.reason === 'unresolvable') return `webhook URL ${error.url} is refused: its host "${error.hostname}" could not be resolved.`;
    if (error.address !== undefined && isIP(error.hostname) && error.address === error.hostname) {
      return `webhook URL ${error.url} is refused: ${error.address} is a ${error.reason} address; webhooks are sent to public addresses only.`;
    }
    return `webhook URL ${error.url} is refused: its host "${error.hostname}" resolves to an address webhooks are not sent to (public addresses only).`;
  }
  if (error instanceof WebhookDeliveryError && error.reason === 'network') {
    const code = (error.cause as { code?: unknown } | undefined)?.code;
    return `webhook ${error.eventId} to ${error.url}: network error${typeof code === 'string' ? ` (${code})` : ''}: the connection failed or was cut`;
  }
  return withoutAddresses(error.message, error instanceof WebhookDeliveryError ? error.url : undefined);
}

/** IPv4 addresses in a message, except the URL's own host (which the tenant wrote), replaced by a placeholder. */
function withoutAddresses(message: string, url: string | undefined): string {
  let own: string | undefined;
  try {
    own = url === undefined ? undefined : new URL(url).hostname;
  } catch {
    own = undefined;
  }
  return message.replace(/\b(?:\d{1,3}\.){3}\d{1,3}\b/g, (address) => (address === own ? address : '(address hidden)'));
}
