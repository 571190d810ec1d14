// Reserve alone: prices the rental, charges it through payment and answers PAID. Each
// iteration takes a slot no other takes, so fleet books every one afterwards (saga.js waits
// for that; this scenario measures the call).
//
//   k6 run -e RATE=200 -e DURATION=30s -e TOKEN=... -e MANAGER_TOKEN=... loadtest/k6/reserve.js

import {
  METHODS,
  STATUS,
  CUSTOMER_ID,
  check,
  exec,
  grpc,
  invoke,
  options as scenarioOptions,
  plannedIterations,
  registerCars,
  requestId,
  slot,
} from './lib/common.js';

export const options = scenarioOptions();

export function setup() {
  return registerCars(plannedIterations());
}

export default function (data) {
  const rental = slot(data, exec.scenario.iterationInTest);
  const response = invoke(
    'reservation',
    METHODS.reserve,
    Object.assign({ request_id: requestId(), customer_id: CUSTOMER_ID, payment_method: 'tok_visa' }, rental),
  );
  check(response, {
    'Reserve answers PAID': (r) => r.status === grpc.StatusOK && r.message.reservation.status === STATUS.paid,
  });
}
