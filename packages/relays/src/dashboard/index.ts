export { dashboard, type Dashboard, type DashboardOptions } from './handler.ts';
export type { DashboardAction, DashboardAuthorize } from './access.ts';
