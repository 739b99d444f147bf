/**
 * Why a gRPC channel never became ready, when TLS is the reason: grpc-js only says "Failed to
 * connect before the deadline". One TLS handshake with the peer tells a plaintext client from a
 * TLS server, an untrusted certificate on either side, and a TLS client from a plaintext server.
 */
import { connect as tlsConnect } from 'node:tls';
import type { Security } from './security.js';

const HOW = 'pass the cluster\'s --tls-ca-file, --tls-cert and --tls-key (or SKEIN_TLS_CA_FILE, SKEIN_TLS_CERT and SKEIN_TLS_KEY; in code security: Security.fromFiles(...) or the cluster\'s `security`)';

/**
 * A sentence saying which TLS mismatch keeps `role` from talking to `what` at host:port, or
 * undefined when TLS is not the problem (nothing listens, or the handshake works). Never rejects.
 */
export function diagnoseTls(host: string, port: number, security: Security, what: string, timeoutMs = 2000): Promise<string | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    let handshook = false;
    const finish = (v: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const mine = security.tlsClientOptions('client');
    const socket = tlsConnect({
      host,
      port,
      servername: 'skein',
      ...(mine ? { ca: mine.ca, cert: mine.cert, key: mine.key } : { rejectUnauthorized: false }),
      // roles are not the question here
      checkServerIdentity: () => undefined,
      ALPNProtocols: ['h2'],
    });
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    timer.unref();
    socket.once('secureConnect', () => {
      handshook = true;
      if (!mine) {
        finish(`the ${what} requires TLS (its address is tls://${host.includes(':') ? `[${host}]` : host}:${port}) and this process has no TLS credentials: ${HOW}`);
        return;
      }
      // TLS 1.3: the server checks the client's certificate after the client's handshake is done;
      // a refusal arrives as an alert. Quiet for a moment: the certificates are fine.
      setTimeout(() => finish(undefined), Math.min(500, timeoutMs / 2)).unref();
    });
    socket.on('data', () => undefined);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const code = String(err.code ?? '');
      const msg = err.message ?? '';
      if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'ETIMEDOUT') return finish(undefined);
      if (/ALERT_UNKNOWN_CA|ALERT_BAD_CERTIFICATE|ALERT_CERTIFICATE_REQUIRED|ALERT_CERTIFICATE_UNKNOWN|alert (unknown ca|bad certificate|certificate required|certificate unknown)/i.test(code + ' ' + msg)) {
        return finish(
          mine
            ? `the ${what} refused this process's TLS certificate: it is not signed by the cluster's CA. Use a certificate issued by the CA the ${what} trusts (its --tls-ca-file)`
            : `the ${what} requires TLS with a client certificate and this process has none: ${HOW}`,
        );
      }
      if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED/i.test(code)) {
        return finish(`the ${what}'s TLS certificate is not signed by this process's CA (${code}): give the cluster's CA with --tls-ca-file (SKEIN_TLS_CA_FILE)`);
      }
      if (!handshook && mine && /wrong version number|WRONG_VERSION_NUMBER|packet length too long|ECONNRESET|socket disconnected|unexpected eof/i.test(code + ' ' + msg)) {
        return finish(`the ${what} does not speak TLS (a tcp:// address) but this process has TLS credentials: connect to a ${what} started with the cluster's --tls-* files, or drop them`);
      }
      finish(undefined);
    });
    socket.once('close', () => {
      if (!handshook && mine) finish(`the ${what} closed the connection during the TLS handshake: it may not speak TLS (a tcp:// ${what}), or it refused this process's certificate`);
      else finish(undefined);
    });
  });
}
