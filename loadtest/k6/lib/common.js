// What every k6 scenario shares: where the services are, the tokens, the scenario options,
// the cars a run registers, and the slot each reservation takes.
//
// Everything is configured by environment variables (`k6 run -e NAME=value`); see
// loadtest/README.md for the list.

import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { randomBytes } from 'k6/crypto';

// ---------------------------------------------------------------------------------------
// Configuration

function env(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

function positiveInt(name, fallback) {
  const raw = env(name, undefined);
  if (raw === undefined) {
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive whole number, not "${raw}"`);
  }
  return value;
}

const DEFAULT_PORTS = { reservation: 50051, payment: 50052, fleet: 50053, mypage: 50054 };

/** One address for everything (the Istio ingress gateway), or none. */
export const GATEWAY_ADDR = env('GATEWAY_ADDR', '');

/** Where `service` answers: GATEWAY_ADDR, else <SERVICE>_ADDR, else its local port. */
export function address(service) {
  return GATEWAY_ADDR || env(`${service.toUpperCase()}_ADDR`, `127.0.0.1:${DEFAULT_PORTS[service]}`);
}

export const RATE = positiveInt('RATE', 50);
export const DURATION = env('DURATION', '30s');
export const CARS = positiveInt('CARS', 200);
export const VUS = positiveInt('VUS', 50);
export const MAX_VUS = Math.max(VUS, positiveInt('MAX_VUS', 4 * VUS));

/** A customer's bearer token (`rentacar token --customer NAME`); unset with RENTACAR_AUTH=off. */
export const TOKEN = env('TOKEN', '');
/** A manager's token (`rentacar token --customer NAME --manager`), for registering cars. */
export const MANAGER_TOKEN = env('MANAGER_TOKEN', '');
/**
 * The customer_id requests name. With a token it stays empty: the token's subject is the
 * customer. Without one (RENTACAR_AUTH=off) every request must name its customer.
 */
export const CUSTOMER_ID = TOKEN ? '' : env('CUSTOMER', 'loadtest');

/** Rentals start at most this many days after today (crates/types/src/period.rs). */
export const BOOKING_HORIZON_DAYS = 365;

// ---------------------------------------------------------------------------------------
// Methods and statuses

export const METHODS = {
  reserve: 'rentacar.reservation.v1.ReservationService/Reserve',
  getReservation: 'rentacar.reservation.v1.ReservationService/GetReservation',
  listReservations: 'rentacar.reservation.v1.ReservationService/ListReservations',
  watchReservation: 'rentacar.reservation.v1.ReservationService/WatchReservation',
  registerCar: 'rentacar.fleet.v1.FleetService/RegisterCar',
  carAvailability: 'rentacar.mypage.v1.MyPageService/GetCarAvailability',
  healthCheck: 'grpc.health.v1.Health/Check',
};

export const STATUS = {
  paid: 'RESERVATION_STATUS_PAID',
  confirmed: 'RESERVATION_STATUS_CONFIRMED',
  rejected: 'RESERVATION_STATUS_REJECTED',
  canceled: 'RESERVATION_STATUS_CANCELED',
};

const CODE_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION',
  'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED',
];

/** A status code's name; streams report codes as names such as "DeadlineExceeded". */
export function codeName(code) {
  if (typeof code === 'number') {
    return CODE_NAMES[code] || `code ${code}`;
  }
  return String(code).replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

function describe(response) {
  const message = response.error ? response.error.message : '';
  return `${codeName(response.status)}${message ? `: ${message}` : ''}`;
}

// ---------------------------------------------------------------------------------------
// Connections
//
// Every service reflects its own descriptors, so each client reflects on its first connect.
// Through the gateway, reflection reaches reservation only: fleet's and mypage's clients
// then read the proto files of this repository instead.

// k6 resolves it from the folder of the script it runs (loadtest/k6), not from this file.
const PROTO_ROOT = '../../proto';

const clients = {
  reservation: new grpc.Client(),
  payment: new grpc.Client(),
  fleet: new grpc.Client(),
  mypage: new grpc.Client(),
};
const fromFiles = {};
if (GATEWAY_ADDR) {
  clients.fleet.load([PROTO_ROOT], 'rentacar/fleet/v1/fleet.proto');
  clients.mypage.load([PROTO_ROOT], 'rentacar/mypage/v1/mypage.proto');
  fromFiles.fleet = true;
  fromFiles.mypage = true;
}
const connected = {};

/** This VU's client of `service`, connected on first use. */
export function client(service) {
  if (!connected[service]) {
    clients[service].connect(address(service), {
      plaintext: true,
      reflect: !fromFiles[service],
      timeout: '10s',
    });
    connected[service] = true;
  }
  return clients[service];
}

function metadata(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Call options carrying the customer's token (when set). */
export function customerParams(tags) {
  return { metadata: metadata(TOKEN), tags: tags || {} };
}

// ---------------------------------------------------------------------------------------
// Calls and errors

/** Every call of a scenario that did not answer OK, by method and code. */
export const grpcErrors = new Counter('grpc_errors');

let errorsLogged = 0;

/** Says what went wrong, for the first few errors of a VU only. */
export function warn(text) {
  errorsLogged += 1;
  if (errorsLogged <= 3) {
    console.warn(text);
  }
}

/** Records a failed call (or stream) in grpc_errors. */
export function recordError(method, code, message) {
  const short = method.slice(method.lastIndexOf('/') + 1);
  grpcErrors.add(1, { rpc: short, code: codeName(code) });
  warn(`${short}: ${codeName(code)}${message ? `: ${message}` : ''}`);
}

/** A unary call for the customer; anything but OK is counted in grpc_errors. */
export function invoke(service, method, request) {
  const response = client(service).invoke(method, request, customerParams());
  if (response.status !== grpc.StatusOK) {
    recordError(method, response.status, response.error && response.error.message);
  }
  return response;
}

// ---------------------------------------------------------------------------------------
// Dates, ids and slots

const DAY_MS = 24 * 60 * 60 * 1000;

/** Today's midnight in UTC, in milliseconds. */
export function utcToday() {
  const now = new Date();
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
}

/** `offset` days after `today` as YYYY-MM-DD. */
export function day(today, offset) {
  return new Date(today + offset * DAY_MS).toISOString().slice(0, 10);
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A random UUID (version 4): a request id no other call uses. */
export function requestId() {
  const b = new Uint8Array(randomBytes(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = hex(b.buffer);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Six random base-36 characters naming a run, so the cars of two runs never clash. */
function runId() {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  return Array.from(new Uint8Array(randomBytes(6)), (b) => alphabet[b % 36]).join('');
}

/**
 * The rental of the i-th reservation of a run: car i mod CARS, one day long, starting
 * 1 + floor(i / CARS) days after the run's first day. No two reservations share a car's day
 * (a return day is not rented), so every one can be confirmed.
 */
export function slot(data, i) {
  const cars = data.cars.length;
  const offset = 1 + Math.floor(i / cars);
  if (offset > BOOKING_HORIZON_DAYS) {
    exec.test.abort(
      `reservation ${i} would start ${offset} days ahead, beyond the ${BOOKING_HORIZON_DAYS}-day ` +
        `horizon: register more cars (CARS=${Math.ceil((i + 1) / BOOKING_HORIZON_DAYS)} or more)`,
    );
  }
  return {
    car_number: data.cars[i % cars],
    pickup_date: day(data.today, offset),
    return_date: day(data.today, offset + 1),
  };
}

/** Seconds in a k6 duration such as "45s", "2m" or "1h30m". */
function seconds(duration) {
  const parts = String(duration).match(/(\d+(?:\.\d+)?)(ms|s|m|h)/g);
  if (!parts || parts.join('') !== String(duration)) {
    throw new Error(`DURATION must look like 30s, 5m or 1h30m, not "${duration}"`);
  }
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
  return parts.reduce((sum, part) => {
    const [, amount, u] = part.match(/(\d+(?:\.\d+)?)(ms|s|m|h)/);
    return sum + Number(amount) * unit[u];
  }, 0);
}

// ---------------------------------------------------------------------------------------
// Scenario options

/**
 * A constant arrival rate of RATE iterations a second for DURATION, and thresholds that fail
 * the run on any failed check or call.
 */
export function options(extraThresholds) {
  return {
    setupTimeout: '300s',
    scenarios: {
      load: {
        executor: 'constant-arrival-rate',
        rate: RATE,
        timeUnit: '1s',
        duration: DURATION,
        preAllocatedVUs: VUS,
        maxVUs: MAX_VUS,
        // Longer than a saga may take (saga.js), so each iteration ends on its own.
        gracefulStop: '60s',
      },
    },
    thresholds: Object.assign(
      {
        checks: ['rate==1'],
        grpc_errors: ['count==0'],
      },
      extraThresholds || {},
    ),
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  };
}

// ---------------------------------------------------------------------------------------
// Setup: cars and reservations to read

/** How long setup waits for the platform to learn what it was told. */
const SETTLE_MS = 30 * 1000;

/**
 * Registers CARS new cars (numbers LT-<run>-<i>) with the manager's token, waits until
 * reservation can price each one, and returns what the scenario needs: `{ run, today, cars }`.
 * `iterations` is how many slots the run will take (0 when it takes none).
 */
export function registerCars(iterations) {
  if (iterations > CARS * BOOKING_HORIZON_DAYS) {
    throw new Error(
      `${iterations} reservations need more than ${CARS} cars within the ` +
        `${BOOKING_HORIZON_DAYS}-day horizon: raise CARS to ${Math.ceil(iterations / BOOKING_HORIZON_DAYS)}`,
    );
  }
  const run = runId();
  const today = utcToday();
  const fleet = client('fleet');
  const cars = [];
  for (let i = 0; i < CARS; i += 1) {
    const carNumber = `LT-${run}-${i}`;
    const response = fleet.invoke(
      METHODS.registerCar,
      {
        car_number: carNumber,
        model: 'Load test',
        daily_price: { currency_code: 'JPY', amount_minor: 5000 },
      },
      { metadata: metadata(MANAGER_TOKEN) },
    );
    if (response.status !== grpc.StatusOK) {
      const hint =
        response.status === grpc.StatusPermissionDenied || response.status === grpc.StatusUnauthenticated
          ? ' (MANAGER_TOKEN must be a manager\'s token: rentacar token --customer NAME --manager)'
          : '';
      throw new Error(`RegisterCar ${carNumber}: ${describe(response)}${hint}`);
    }
    cars.push(carNumber);
  }
  awaitCarsPriced(today, cars);
  return { run, today, cars };
}

/**
 * Reservation learns cars from fleet's events; until then a Reserve of the car is NOT_FOUND.
 * Asks for each car with a payment method that is always declined: FAILED_PRECONDITION
 * means reservation priced the car (and stored nothing).
 */
function awaitCarsPriced(today, cars) {
  const reservation = client('reservation');
  const deadline = Date.now() + SETTLE_MS;
  for (let i = cars.length - 1; i >= 0; i -= 1) {
    for (let attempt = 0; ; attempt += 1) {
      const response = reservation.invoke(
        METHODS.reserve,
        {
          request_id: `probe-${cars[i]}-${attempt}`,
          customer_id: CUSTOMER_ID,
          car_number: cars[i],
          pickup_date: day(today, 1),
          return_date: day(today, 2),
          payment_method: 'tok_chargeDeclined',
        },
        customerParams(),
      );
      if (response.status === grpc.StatusFailedPrecondition) {
        break;
      }
      if (response.status !== grpc.StatusNotFound) {
        throw new Error(`Reserve of ${cars[i]} (declined on purpose): ${describe(response)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`reservation did not learn car ${cars[i]} within ${SETTLE_MS / 1000} s`);
      }
      sleep(0.2);
    }
  }
}

/**
 * Makes `count` reservations on the first slots and waits until each is CONFIRMED; with
 * `onMypage`, also until mypage's read model shows each holding its car's days.
 * Returns them as `{ id, car_number, pickup_date, return_date }`.
 */
export function confirmedReservations(data, count, onMypage) {
  const reservation = client('reservation');
  const made = [];
  for (let i = 0; i < count; i += 1) {
    const rental = slot(data, i);
    const response = reservation.invoke(
      METHODS.reserve,
      Object.assign({ request_id: requestId(), customer_id: CUSTOMER_ID, payment_method: 'tok_visa' }, rental),
      customerParams(),
    );
    if (response.status !== grpc.StatusOK) {
      throw new Error(`Reserve ${rental.car_number} ${rental.pickup_date}: ${describe(response)}`);
    }
    made.push(Object.assign({ id: response.message.reservation.reservationId }, rental));
  }
  const deadline = Date.now() + SETTLE_MS;
  for (const r of made) {
    awaitConfirmed(reservation, r.id, deadline);
    if (onMypage) {
      awaitHeldOnMypage(r, deadline);
    }
  }
  return made;
}

function awaitConfirmed(reservation, id, deadline) {
  for (;;) {
    const response = reservation.invoke(METHODS.getReservation, { reservation_id: id }, customerParams());
    if (response.status !== grpc.StatusOK) {
      throw new Error(`GetReservation ${id}: ${describe(response)}`);
    }
    const status = response.message.reservation.status;
    if (status === STATUS.confirmed) {
      return;
    }
    if (status !== STATUS.paid) {
      throw new Error(`reservation ${id} ended ${status}, not CONFIRMED`);
    }
    if (Date.now() > deadline) {
      throw new Error(`reservation ${id} was not CONFIRMED within ${SETTLE_MS / 1000} s`);
    }
    sleep(0.2);
  }
}

function awaitHeldOnMypage(r, deadline) {
  const mypage = client('mypage');
  for (;;) {
    const response = mypage.invoke(
      METHODS.carAvailability,
      { car_number: r.car_number, pickup_date: r.pickup_date, return_date: r.return_date },
      customerParams(),
    );
    if (response.status !== grpc.StatusOK) {
      throw new Error(`GetCarAvailability ${r.car_number}: ${describe(response)}`);
    }
    if (response.message.conflictingReservationIds.includes(r.id)) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`mypage did not show reservation ${r.id} within ${SETTLE_MS / 1000} s`);
    }
    sleep(0.2);
  }
}

/** The reservations a run of RATE a second for DURATION starts, at most. */
export function plannedIterations() {
  return Math.ceil(RATE * seconds(DURATION)) + 1;
}

export { check, exec, grpc };
