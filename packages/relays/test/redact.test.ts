import { describe, expect, it } from 'vitest';
import { maskCredentials, maskPassword } from '../src/redact.js';

describe('masking credentials in URLs', () => {
  it('masks the whole password, "@" and all, by parsing the URL', () => {
    expect(maskPassword('postgres://app:pa@ss@db.internal:5432/orders')).toBe('postgres://app:***@db.internal:5432/orders');
    expect(maskPassword('postgres://app:p%40ss@db.internal/orders')).toBe('postgres://app:***@db.internal/orders');
    expect(maskPassword('amqp://guest:guest@localhost:5672')).toBe('amqp://guest:***@localhost:5672');
    expect(maskPassword('postgres://app:secret@db/orders?note=a@b')).toBe('postgres://app:***@db/orders?note=a@b');
    expect(maskPassword('postgres://app@db/orders')).toBe('postgres://app@db/orders');
    expect(maskPassword('host=db user=app password=s3@cret dbname=orders')).toBe('host=db user=app password=*** dbname=orders');
    expect(maskPassword("password='a b@c' host=db")).toBe('password=*** host=db');
  });

  it('masks user name and password for listings others see', () => {
    expect(maskCredentials('https://hook:s3@cr3t@acme.example.com/in')).toBe('https://***:***@acme.example.com/in');
    expect(maskCredentials('https://token@acme.example.com/in')).toBe('https://***@acme.example.com/in');
    expect(maskCredentials('https://acme.example.com/in?to=a@b')).toBe('https://acme.example.com/in?to=a@b');
  });
});
