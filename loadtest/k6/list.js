// ListReservations: the customer's newest reservations, a page of 10. Setup makes up to 10
// first, so the page is never empty.
//
//   k6 run -e RATE=500 -e DURATION=30s -e TOKEN=... -e MANAGER_TOKEN=... loadtest/k6/list.js

import {
  METHODS,
  CARS,
  CUSTOMER_ID,
  check,
  confirmedReservations,
  grpc,
  invoke,
  options as scenarioOptions,
  registerCars,
} from './lib/common.js';

const PAGE_SIZE = 10;

export const options = scenarioOptions();

export function setup() {
  const data = registerCars(0);
  data.reservations = confirmedReservations(data, Math.min(CARS, PAGE_SIZE), false);
  return data;
}

export default function (data) {
  const response = invoke('reservation', METHODS.listReservations, {
    customer_id: CUSTOMER_ID,
    page_size: PAGE_SIZE,
  });
  check(response, {
    'ListReservations answers a page with the reservations of setup': (r) =>
      r.status === grpc.StatusOK && r.message.reservations.length >= data.reservations.length,
  });
}
