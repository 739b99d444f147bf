import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@skein/common';
import createEnviron from '../src/plugins/environ.js';

describe('the Environ nanny plugin: bad options', () => {
  it('names the bad variable and its type, never a value (values may be secrets)', () => {
    let err: unknown;
    try {
      createEnviron({ vars: { API_TOKEN: 'sk-secret-value', RETRIES: 3 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    const m = (err as Error).message;
    expect(m).toMatch(/vars\.RETRIES.*number/);
    expect(m).not.toContain('sk-secret-value');
  });
});
