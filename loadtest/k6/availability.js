// mypage's GetCarAvailability, from its read model. Setup makes a few confirmed reservations
// and waits until mypage shows them; iterations then ask in turn for a reserved rental
// (not available, naming the reservation) and for the free day after it (available).
//
//   k6 run -e RATE=500 -e DURATION=30s -e TOKEN=... -e MANAGER_TOKEN=... loadtest/k6/availability.js

import {
  METHODS,
  CARS,
  check,
  confirmedReservations,
  day,
  exec,
  grpc,
  invoke,
  options as scenarioOptions,
  registerCars,
} from './lib/common.js';

export const options = scenarioOptions();

export function setup() {
  const data = registerCars(0);
  data.reservations = confirmedReservations(data, Math.min(CARS, 10), true);
  return data;
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const held = data.reservations[Math.floor(i / 2) % data.reservations.length];
  if (i % 2 === 0) {
    const response = invoke('mypage', METHODS.carAvailability, {
      car_number: held.car_number,
      pickup_date: held.pickup_date,
      return_date: held.return_date,
    });
    check(response, {
      'a reserved rental is not available': (r) =>
        r.status === grpc.StatusOK &&
        r.message.available === false &&
        r.message.conflictingReservationIds.includes(held.id),
    });
  } else {
    // The reservation returns the car on return_date; the day after is nobody's.
    const response = invoke('mypage', METHODS.carAvailability, {
      car_number: held.car_number,
      pickup_date: held.return_date,
      return_date: day(Date.parse(held.return_date), 1),
    });
    check(response, {
      'a free rental is available': (r) => r.status === grpc.StatusOK && r.message.available === true,
    });
  }
}
