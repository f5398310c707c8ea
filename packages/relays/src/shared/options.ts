export { wholeOption } from '@tidings/outbox/internal';
