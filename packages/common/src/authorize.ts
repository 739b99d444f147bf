import type { ServiceError } from '@grpc/grpc-js';
import { toGrpcStatus } from './grpc.js';
import { requireRole, type Role, type Security } from './security/security.js';

/** The roles that may call each method of a gRPC service implementation. */
export type RoleTable<S> = { readonly [M in keyof S]: readonly Role[] };

/** Every role: for the RPCs any member of the cluster may call (authenticated, when security is on). */
export const ANY_ROLE: readonly Role[] = ['scheduler', 'worker', 'nanny', 'client'];

interface AnyCall {
  metadata: import('@grpc/grpc-js').Metadata;
  emit(event: 'error', err: Partial<ServiceError>): boolean;
}

/**
 * `impl` with each method checking its caller first: `security.authenticate` (a missing or wrong
 * token or certificate: UNAUTHENTICATED, saying what to pass) and then that the caller holds one
 * of the roles `roles` names for the method (else PERMISSION_DENIED, naming the role needed).
 * A stream is checked once, when it opens, not per message. Without security every caller has
 * every role and passes.
 *
 * @example
 * server.addService(SchedulerServiceService, authorizeService('SchedulerService', impl, security, SCHEDULER_ROLES));
 */
export function authorizeService<S extends object>(service: string, impl: S, security: Security, roles: RoleTable<S>): S {
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(impl)) {
    if (!Object.hasOwn(roles, name)) throw new Error(`authorizeService: no roles are set for ${service}.${name}`);
  }
  for (const name of Object.keys(roles) as Array<keyof S & string>) {
    const method = impl[name] as unknown as (call: AnyCall, callback?: (err: Partial<ServiceError> | null) => void) => unknown;
    if (typeof method !== 'function') throw new Error(`authorizeService: ${service} has no method ${name}`);
    const what = `${service}.${name[0]!.toUpperCase()}${name.slice(1)}`;
    const allowed = roles[name];
    out[name] = (call: AnyCall, callback?: (err: Partial<ServiceError> | null) => void) => {
      try {
        requireRole(security.authenticate(call, what), allowed, what);
      } catch (err) {
        const status = toGrpcStatus(err);
        if (typeof callback === 'function') callback(status);
        else call.emit('error', status);
        return undefined;
      }
      return method.call(impl, call, callback);
    };
  }
  return out as S;
}
