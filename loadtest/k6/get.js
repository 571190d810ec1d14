// GetReservation of a handful of confirmed reservations that setup makes.
//
//   k6 run -e RATE=500 -e DURATION=30s -e TOKEN=... -e MANAGER_TOKEN=... loadtest/k6/get.js

import {
  METHODS,
  STATUS,
  CARS,
  check,
  confirmedReservations,
  exec,
  grpc,
  invoke,
  options as scenarioOptions,
  registerCars,
} from './lib/common.js';

export const options = scenarioOptions();

export function setup() {
  const data = registerCars(0);
  data.reservations = confirmedReservations(data, Math.min(CARS, 10), false);
  return data;
}

export default function (data) {
  const wanted = data.reservations[exec.scenario.iterationInTest % data.reservations.length];
  const response = invoke('reservation', METHODS.getReservation, { reservation_id: wanted.id });
  check(response, {
    'GetReservation answers the CONFIRMED reservation': (r) =>
      r.status === grpc.StatusOK &&
      r.message.reservation.reservationId === wanted.id &&
      r.message.reservation.status === STATUS.confirmed,
  });
}
