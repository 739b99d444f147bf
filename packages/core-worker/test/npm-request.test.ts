import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@skein/common';
import { checkNpmRequest } from '../src/environment/npm.js';

const messageOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    return (e as Error).message;
  }
  throw new Error('accepted');
};

describe('checkNpmRequest: bad options name the field and its type, never a value (npm options may hold auth tokens)', () => {
  it('an npm option that is not a flag', () => {
    const m = messageOf(() => checkNpmRequest({ packages: ['a@1.0.0'], npmOptions: ['--no-save', '//registry.example.com/:_authToken=npm_SECRET'] }, 'NpmInstall'));
    expect(m).toMatch(/npmOptions\[1\]/);
    expect(m).not.toContain('npm_SECRET');
  });

  it('an npm option of the wrong type', () => {
    const m = messageOf(() => checkNpmRequest({ packages: ['a@1.0.0'], npmOptions: ['--_authToken=npm_SECRET', 7] }, 'NpmInstall'));
    expect(m).toMatch(/npmOptions\[1\].*number/);
    expect(m).not.toContain('npm_SECRET');
  });
});
