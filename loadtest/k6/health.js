// grpc.health.v1.Health/Check, the cheapest call each service answers: the baseline of the
// gRPC stack. Iterations go round the four services; `service` tags their latencies.
//
//   k6 run -e RATE=1000 -e DURATION=30s loadtest/k6/health.js

import { GATEWAY_ADDR, METHODS, check, client, exec, grpc, options as scenarioOptions, recordError } from './lib/common.js';

if (GATEWAY_ADDR) {
  throw new Error(
    'the gateway routes no health checks: forward the services themselves and set ' +
      'RESERVATION_ADDR, PAYMENT_ADDR, FLEET_ADDR and MYPAGE_ADDR instead of GATEWAY_ADDR',
  );
}

const SERVICES = ['reservation', 'payment', 'fleet', 'mypage'];

export const options = scenarioOptions();

export default function () {
  const service = SERVICES[exec.scenario.iterationInTest % SERVICES.length];
  // The overall entry "": SERVING while the service is ready. Health needs no token.
  const response = client(service).invoke(METHODS.healthCheck, { service: '' }, { tags: { service } });
  if (response.status !== grpc.StatusOK) {
    recordError(METHODS.healthCheck, response.status, response.error && response.error.message);
  }
  check(response, {
    'the service is SERVING': (r) => r.status === grpc.StatusOK && r.message.status === 'SERVING',
  });
}
