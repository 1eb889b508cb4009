// An integrator's session with subreq in Node.js: plain AMQP 0-9-1 and JSON, nothing else.
//
// Sets up an account and its members, submits a change (and retries it: one effect),
// has the owner approve it, and follows the request's events from its own durable queue,
// deduplicated on event_id.
//
//   npm install amqplib
//   node docs/examples/node_client.mjs [AMQP_URL] [EVENTS_QUEUE]   # default: $SUBREQ_AMQP_URL
//
// A worker must be running against the same broker (`subreq worker`). The test suite runs
// this file as it is, with NODE_PATH=tools/node/node_modules (where `make node` puts amqplib).
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url); // amqplib is CommonJS; NODE_PATH is honoured
const amqp = require("amqplib");

const url = process.argv[2] ?? process.env.SUBREQ_AMQP_URL ?? "amqp://guest:guest@localhost:5672/%2F";
const eventsQueue = process.argv[3] ?? "initech.subreq-events";
const ACCOUNT = "initech";
const OWNER = "initech-owner";
const ADMIN = "initech-admin";

// guide: connect
const connection = await amqp.connect(url);
const channel = await connection.createConfirmChannel();
const waiting = new Map(); // correlation_id -> the settle function of the command's promise

// Direct reply-to: no queue to declare; consume it before publishing, on the same channel.
await channel.consume(
  "amq.rabbitmq.reply-to",
  (msg) => {
    // undefined: a late answer to a command we gave up on
    waiting.get(msg.properties.correlationId)?.(null, JSON.parse(msg.content.toString("utf8")));
  },
  { noAck: true },
);
// mandatory: a command no queue takes comes back (no worker ever declared subreq.commands).
channel.on("return", (msg) => {
  waiting.get(msg.properties.correlationId)?.(new Error("no worker: the command was unroutable"));
});
// /guide

// guide: command
/** Publishes a command and resolves to its reply; pass the same messageId to retry. */
async function command(routingKey, body, { messageId = randomUUID(), timeoutMs = 10000 } = {}) {
  const correlationId = randomUUID(); // this delivery's: the reply carries it back
  const reply = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(correlationId);
      reject(new Error(`no reply to ${routingKey}: retry with messageId ${messageId}`));
    }, timeoutMs);
    waiting.set(correlationId, (error, answer) => {
      clearTimeout(timer);
      waiting.delete(correlationId);
      error ? reject(error) : resolve(answer);
    });
  });
  channel.publish("subreq.commands", routingKey, Buffer.from(JSON.stringify(body)), {
    contentType: "application/json",
    messageId, // the idempotency key
    correlationId,
    replyTo: "amq.rabbitmq.reply-to",
    persistent: true,
    mandatory: true,
  });
  // The broker confirms it has the command; the reply follows once a worker handled it.
  const [answer] = await Promise.all([reply, channel.waitForConfirms()]);
  return answer;
}

/** The result of an ok reply; a refusal thrown with its code and details. */
async function ok(routingKey, body, options) {
  const reply = await command(routingKey, body, options);
  if (!reply.ok) {
    throw Object.assign(new Error(`${reply.error.code}: ${reply.error.message}`), reply.error);
  }
  return reply.result;
}
// /guide

// guide: events
// Our own durable queue, declared and bound BEFORE the commands whose events we want.
const events = await connection.createChannel();
await events.assertQueue(eventsQueue, { durable: true });
for (const key of ["request.*", "subscription.changed"]) {
  await events.bindQueue(eventsQueue, "subreq.events", key);
}
await events.prefetch(50);
const seen = new Set(); // event_ids handled: a real consumer keeps them in its database
const timeline = [];
let arrived = () => {};
await events.consume(eventsQueue, (msg) => {
  const event = JSON.parse(msg.content.toString("utf8"));
  if (seen.has(event.event_id)) {
    console.log(`event ${event.type} ${event.event_id}: a redelivery, ignored`);
  } else {
    seen.add(event.event_id);
    timeline.push(event);
    arrived();
  }
  events.ack(msg); // after handling it: at-least-once
});
// /guide

await ok("account.upsert", {
  account_id: ACCOUNT,
  name: "Initech",
  type: "sales_assisted",
  allows_subscription_changes: true,
  subscription: {
    currency: "EUR",
    billing_cycle: "annual",
    products: [{ product: "support", plan: "team", seats: 20 }],
  },
});
for (const [userId, role] of [[OWNER, "owner"], [ADMIN, "admin"]]) {
  await ok("member.upsert", {
    account_id: ACCOUNT,
    user_id: userId,
    name: userId,
    email: `${userId}@initech.example`,
    role,
  });
}
console.log(`account ${ACCOUNT}: owner ${OWNER}, admin ${ADMIN}`);

// guide: submit
const submit = {
  account_id: ACCOUNT,
  actor_id: ADMIN,
  changes: [{ type: "upgrade_plan", product: "support", plan: "professional" }],
  note: "The team needs the professional features",
};
const messageId = randomUUID();
const { request } = await ok("request.submit", submit, { messageId });
console.log(`submitted: request ${request.request_id} is ${request.state}`);
console.log(`cost: +${request.summary.total} ${request.summary.currency} per ${request.summary.period}`);

// A retry (same messageId, a new delivery): the stored reply again, no second request.
const retried = await ok("request.submit", submit, { messageId });
console.log(`retried: same request ${retried.request.request_id === request.request_id}`);

try {
  await ok("request.submit", { ...submit, changes: [{ type: "add_seats", product: "support", quantity: 1 }] });
} catch (refused) {
  console.log(`refused: ${refused.code}: pending request ${refused.details[0].request_id}`);
}
// /guide

const approved = await ok("request.decide", {
  request_id: request.request_id,
  actor_id: OWNER,
  decision: "approve",
});
console.log(`approved: request ${approved.request.request_id} is ${approved.request.state}`);

// guide: follow
// Wait for this request's events; a request's events arrive in the order they happened.
const ours = () => timeline.filter((e) => e.request_id === request.request_id);
const wanted = ["request.submitted", "request.approved", "subscription.changed"];
const deadline = Date.now() + 15000;
while (!wanted.every((type) => ours().some((e) => e.type === type))) {
  if (Date.now() > deadline) throw new Error(`events missing: ${JSON.stringify(ours())}`);
  await new Promise((resolve) => {
    arrived = resolve;
    setTimeout(resolve, 200);
  });
}
for (const event of ours()) {
  console.log(`event ${event.type} ${event.event_id} at ${event.occurred_at}`);
}
const changed = ours().find((e) => e.type === "subscription.changed").data.new;
console.log(`subscription: ${changed.products.map((p) => `${p.product} ${p.plan} x${p.seats}`)}`);
// /guide

await connection.close();
