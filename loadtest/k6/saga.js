// The whole saga: Reserve (which pays), then WatchReservation until fleet has booked the
// days and the reservation is CONFIRMED. Each iteration takes a slot no other takes, so every
// reservation must be confirmed; one that is rejected, canceled, or not confirmed within
// SAGA_TIMEOUT fails the run. A watch the server refuses as UNAVAILABLE (it holds as many
// watches as it can, or sheds load) is opened again after WATCH_RETRY_MS, as the refusal
// asks; the refusal still counts in grpc_errors.
//
//   k6 run -e RATE=200 -e DURATION=30s -e TOKEN=... -e MANAGER_TOKEN=... loadtest/k6/saga.js

import { Counter, Trend } from 'k6/metrics';
import { setTimeout } from 'k6/timers';
import {
  METHODS,
  STATUS,
  CUSTOMER_ID,
  address,
  check,
  customerParams,
  exec,
  grpc,
  invoke,
  options as scenarioOptions,
  plannedIterations,
  recordError,
  registerCars,
  requestId,
  slot,
  warn,
} from './lib/common.js';

const SAGA_TIMEOUT = __ENV.SAGA_TIMEOUT || '30s';
const SAGA_TIMEOUT_MS = milliseconds(SAGA_TIMEOUT);
const WATCH_RETRY_MS = Number(__ENV.WATCH_RETRY_MS || 200);
const PRINT_RESERVED = __ENV.PRINT_RESERVED === '1';

/** From sending Reserve to receiving CONFIRMED. */
const sagaDuration = new Trend('saga_duration', true);
const confirmed = new Counter('reservations_confirmed');
/** Reservations that failed to reserve, ended REJECTED or CANCELED, or were never confirmed. */
const notConfirmed = new Counter('reservations_not_confirmed');

export const options = scenarioOptions({
  reservations_not_confirmed: ['count==0'],
});

export function setup() {
  return registerCars(plannedIterations());
}

// A watch ends only when the reservation does (REJECTED or CANCELED); after CONFIRMED the
// client leaves by closing its connection, so watches get a client of their own, connected
// for each iteration. It reflects once per VU and keeps the descriptors across connections.
const watcher = new grpc.Client();
let reflected = false;

export default function (data) {
  const rental = slot(data, exec.scenario.iterationInTest);
  const started = Date.now();
  const reserved = invoke(
    'reservation',
    METHODS.reserve,
    Object.assign({ request_id: requestId(), customer_id: CUSTOMER_ID, payment_method: 'tok_visa' }, rental),
  );
  const paid = check(reserved, {
    'Reserve answers PAID': (r) => r.status === grpc.StatusOK && r.message.reservation.status === STATUS.paid,
  });
  if (!paid) {
    notConfirmed.add(1, { outcome: 'reserve_failed' });
    return;
  }
  const id = reserved.message.reservation.reservationId;
  if (PRINT_RESERVED) {
    // Every reservation the platform acknowledged, for a check of what it kept afterwards.
    console.log(`reserved ${id}`);
  }

  watcher.connect(address('reservation'), { plaintext: true, reflect: !reflected, timeout: '10s' });
  reflected = true;

  let settled = false;
  const settle = (outcome, ok) => {
    if (settled) {
      return;
    }
    settled = true;
    check(null, { 'reservation is CONFIRMED': () => ok });
    if (ok) {
      sagaDuration.add(Date.now() - started);
      confirmed.add(1);
    } else {
      notConfirmed.add(1, { outcome });
      warn(`reservation ${id} (${rental.car_number} ${rental.pickup_date}): ${outcome}`);
    }
    watcher.close();
  };

  // Each attempt is a stream of its own; the last one's outcome settles the saga.
  const watch = () => {
    let retried = false;
    const stream = new grpc.Stream(watcher, METHODS.watchReservation, {
      metadata: customerParams().metadata,
      timeout: `${Math.max(1, SAGA_TIMEOUT_MS - (Date.now() - started))}ms`,
    });
    stream.on('data', (message) => {
      const status = message.reservation.status;
      if (status === STATUS.confirmed) {
        settle('confirmed', true);
      } else if (status !== STATUS.paid) {
        const reason = message.reservation.rejectionReason;
        settle(`${status}${reason ? ` (${reason})` : ''}`, false);
      }
    });
    stream.on('error', (error) => {
      // Closing the connection after CONFIRMED cancels the stream: that is no error.
      if (settled) {
        return;
      }
      recordError(METHODS.watchReservation, error.code, error.message);
      const retry = error.code === grpc.StatusUnavailable;
      if (retry && Date.now() - started + WATCH_RETRY_MS < SAGA_TIMEOUT_MS) {
        retried = true;
        setTimeout(watch, WATCH_RETRY_MS);
        return;
      }
      settle(`watch failed: ${error.message}`, false);
    });
    stream.on('end', () => {
      // A refused stream may end after its error: the next attempt decides then.
      if (!retried) {
        settle('watch ended before CONFIRMED', false);
      }
    });
    stream.write({ reservation_id: id });
    stream.end();
  };
  watch();
}

/** "30s", "1500ms" or "2m" in milliseconds. */
function milliseconds(duration) {
  const match = /^(\d+)(ms|s|m)$/.exec(duration);
  if (!match) {
    throw new Error(`SAGA_TIMEOUT must look like 30s, 1500ms or 2m, not ${duration}`);
  }
  return Number(match[1]) * { ms: 1, s: 1000, m: 60000 }[match[2]];
}
