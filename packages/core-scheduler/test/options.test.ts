import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@skein/common';
import { compileSchedulerOptions, parseDashboardAddress } from '../src/index.js';

describe('scheduler options: addresses', () => {
  it('parses the dashboard address forms against the scheduler host', () => {
    expect(parseDashboardAddress(':8787', '10.0.0.1')).toEqual({ host: '10.0.0.1', port: 8787 });
    expect(parseDashboardAddress('8787', '10.0.0.1')).toEqual({ host: '10.0.0.1', port: 8787 });
    expect(parseDashboardAddress(9000, '10.0.0.1')).toEqual({ host: '10.0.0.1', port: 9000 });
    expect(parseDashboardAddress('http://localhost:8787', '0.0.0.0')).toEqual({ host: 'localhost', port: 8787 });
    expect(parseDashboardAddress('[::1]:8787', '0.0.0.0')).toEqual({ host: '::1', port: 8787 });
    expect(parseDashboardAddress(null, 'x')).toBeNull();
  });
  it('refuses malformed dashboard addresses and hosts at once, with the reason', () => {
    expect(() => parseDashboardAddress('localhost:8787:', '0.0.0.0')).toThrow(/Bad dashboard address .*more than one ":"/);
    expect(() => parseDashboardAddress('host:port', '0.0.0.0')).toThrow(InvalidArgumentError);
    expect(() => compileSchedulerOptions({ host: '127.0.0.1:8786' })).toThrow(/Bad scheduler host "127.0.0.1:8786": a host has no port/);
    expect(() => compileSchedulerOptions({ host: 'bad host' })).toThrow(/Bad scheduler host/);
    expect(compileSchedulerOptions({ host: '[::1]', dashboardAddress: null }).host).toBe('::1');
  });
});
